"""Taggers as symplug models: callables ``f(p4, mask) -> scores``.

:class:`CallableTagger` wraps any ``f(p4 (N, P, 4), mask (N, P)) -> (N,) or (N, C)``
and returns ``{"score": (copies, J[, C])}`` for a rotated jet block; its ``units``
say what the score is: ``"probability"`` (a softmax or sigmoid output, the default),
``"logit"`` (raw logits) or a physical unit. Two shipped taggers have known symmetry:
``mass`` (a sigmoid of the jet invariant mass: a probability, Lorentz invariant) and
``pz2`` (sum of the constituents' pz^2, in GeV^2: invariant under rotations about the
beam only). The ``reference`` tagger gives the softmax probability of Top.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from symplug import SymplugError
from symplug.plugins import import_spec
from symplug.result import load_weights


def jet_mass(p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Invariant mass (GeV) of the summed constituents."""
    total = (p4 * mask[..., None]).sum(dim=1)
    m2 = total[:, 0] ** 2 - (total[:, 1:] ** 2).sum(-1)
    return torch.sqrt(torch.clamp(m2, min=0.0))


def mass_tagger(p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Top-like score from the jet mass alone: a logistic step at 120 GeV."""
    return torch.sigmoid((jet_mass(p4, mask) - 120.0) / 20.0)


def pz2_tagger(p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum_i pz_i^2 (GeV^2): breaks SO(3), keeps SO(2) about the beam."""
    return ((p4[..., 3] * mask) ** 2).sum(dim=1)


SHIPPED = {"mass": mass_tagger, "pz2": pz2_tagger}
UNITS = {"mass": "probability", "pz2": "GeV^2"}  # of the shipped taggers' scores
REFERENCE = Path(__file__).resolve().parent / "data" / "tagger.pt"


def load_reference(path: str | Path | None = None, dtype=torch.float64) -> "CallableTagger":
    """The shipped reference tagger (``reference``) or a checkpoint written by
    :mod:`symplug_jets.train_tagger`, loaded safely (``weights_only=True``)."""
    from .tagger_model import ParticleTransformerTagger

    path = Path(path) if path else REFERENCE
    if not path.exists():
        raise SymplugError(f"{path}: no such tagger checkpoint")
    if path.is_dir():
        raise SymplugError(f"{path}: a folder, not a tagger checkpoint")
    saved = load_weights(path, "tagger checkpoint")
    try:  # a bare state_dict, another model's weights
        module = ParticleTransformerTagger(**saved["config"])
        module.load_state_dict(saved["state_dict"])
    except Exception as exc:
        raise SymplugError(f"{path}: not a symplug tagger checkpoint "
                           f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from exc
    module = module.to(dtype).eval()
    tagger = CallableTagger(lambda p4, mask: module.score(p4.to(dtype), mask), "reference",
                            units="probability")  # softmax probability of Top
    tagger.module = module  # the layers symplug hooks: embed, blocks.0, blocks.1, pool
    return tagger


class CallableTagger:
    """A tagger ``f(p4, mask)`` as a symplug model on rotated jet blocks; ``units``: what
    its score is (``"probability"``, ``"logit"`` or a physical unit such as ``"GeV^2"``)."""

    def __init__(self, fn: Callable, name: str = "tagger", units: str = "probability"):
        if not callable(fn):
            raise SymplugError(f"tagger {name!r} is not callable")
        self.fn, self.name, self.units = fn, name, str(units)

    @property
    def output_units(self) -> dict[str, str]:
        """``{"score": units}``: the units of the score this tagger returns."""
        return {"score": self.units}

    def __call__(self, batch: dict) -> dict[str, torch.Tensor]:
        raw = self.fn(batch["p4"], batch["mask"])
        scores = _as_scores(raw, self.name)
        n = batch["p4"].shape[0]
        if scores.ndim not in (1, 2) or scores.shape[0] != n:
            raise SymplugError(f"tagger {self.name!r} returned {tuple(scores.shape)} scores for "
                               f"{n} jets; expected (N,) or (N, C)")
        return {"score": scores.reshape(batch["copies"], batch["jets"], *scores.shape[1:])}

    def __repr__(self) -> str:
        return f"CallableTagger({self.name})"


def _as_scores(raw, name: str) -> torch.Tensor:
    """A tagger's output as a real tensor: tensors, numpy arrays and lists of numbers;
    integer or bool scores (hard decisions) become float64."""
    try:
        scores = torch.as_tensor(raw)
    except Exception as exc:
        raise SymplugError(f"tagger {name!r} returned a {type(raw).__name__}, not scores "
                           "(a tensor or array of numbers)") from exc
    if scores.is_complex():
        raise SymplugError(f"tagger {name!r} returned complex scores ({scores.dtype})")
    return scores if scores.is_floating_point() else scores.to(torch.float64)


def load_tagger(spec: str, trusted: bool = False) -> CallableTagger:
    """A shipped tagger (``reference``, ``mass``, ``pz2``), a checkpoint (``*.pt``, read
    with ``torch.load(weights_only=True)``), ``module:function`` (its score a
    probability, unless the function has a ``units`` attribute, e.g. ``score.units =
    "logit"``) or ``module:name`` of a ready tagger (a :class:`CallableTagger`, e.g. a
    :class:`~symplug_jets.weaver.WeaverTagger`). A ``module:...`` imports the module,
    which runs its code: it is refused unless ``trusted`` (``--trust-model``); any error
    while importing it is an error naming the spec."""
    if spec == "reference":
        return load_reference()
    if spec.endswith(".pt"):
        return load_reference(spec)
    if spec in SHIPPED:
        return CallableTagger(SHIPPED[spec], spec, units=UNITS[spec])
    if ":" not in spec:
        raise SymplugError(f"unknown tagger {spec!r}: give reference, "
                           f"{', '.join(SHIPPED)}, a .pt checkpoint or module:function")
    fn = import_spec(spec, "tagger", trusted)
    if isinstance(fn, CallableTagger):  # e.g. a WeaverTagger built in the module
        return fn
    return CallableTagger(fn, spec, units=getattr(fn, "units", "probability"))
