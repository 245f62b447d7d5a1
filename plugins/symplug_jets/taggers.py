"""Taggers as symplug models: callables ``f(p4, mask) -> scores``.

:class:`CallableTagger` wraps any ``f(p4 (N, P, 4), mask (N, P)) -> (N,) or (N, C)``
and returns ``{"score": (copies, J[, C])}`` for a rotated jet block; its ``units``
say what the score is: ``"probability"`` (a softmax or sigmoid output, the default),
``"logit"`` (raw logits) or a physical unit. Two shipped taggers have known symmetry:
``mass`` (a sigmoid of the jet invariant mass: a probability, Lorentz invariant) and
``pz2`` (sum of the constituents' pz^2, in GeV^2: invariant under rotations about the
beam only). The trained taggers (:data:`SHIPPED_CHECKPOINTS`: ``pointnet``,
``pointnet-noaug``, ``part``, ``reference``) give the softmax probability of Top.
"""

from __future__ import annotations

from pathlib import Path

import torch

from symplug import SymplugError
from symplug.plugins import import_spec
from symplug.result import load_weights

from .callable_tagger import CallableTagger


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
# trained taggers shipped as checkpoints (docs/jets.md, "The reference taggers"): the
# small particle transformer, the PointNet on raw 4-momenta trained with and without
# random rotations about the beam, and weaver's ParT trained by weaver's own loop
SHIPPED_CHECKPOINTS = {"reference": "tagger.pt", "pointnet": "pointnet.pt",
                       "pointnet-noaug": "pointnet_noaug.pt", "part": "part.pt"}


def load_reference(path: str | Path | None = None, dtype=torch.float64) -> "CallableTagger":
    """The shipped reference tagger (``reference``) or a checkpoint written by
    :mod:`symplug_jets.train_tagger` (a particle transformer, or a PointNet when its
    config says ``arch: pointnet``), loaded safely (``weights_only=True``)."""
    from .pointnet import PointNetTagger
    from .tagger_model import ParticleTransformerTagger

    path = Path(path) if path else REFERENCE
    if not path.exists():
        raise SymplugError(f"{path}: no such tagger checkpoint")
    if path.is_dir():
        raise SymplugError(f"{path}: a folder, not a tagger checkpoint")
    saved = load_weights(path, "tagger checkpoint")
    if isinstance(saved, dict) and isinstance(saved.get("config"), dict) \
            and saved["config"].get("arch") == "weaver_part":
        from .weaver import load_part

        return load_part(saved, path, dtype)
    try:  # a bare state_dict, another model's weights
        config = dict(saved["config"])
        arch = PointNetTagger if config.pop("arch", None) == "pointnet" else \
            ParticleTransformerTagger
        module = arch(**config)
        module.load_state_dict(saved["state_dict"])
    except Exception as exc:
        raise SymplugError(f"{path}: not a symplug tagger checkpoint "
                           f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from exc
    module = module.to(dtype).eval()
    tagger = CallableTagger(lambda p4, mask: module.score(p4.to(dtype), mask), "reference",
                            units="probability")  # softmax probability of Top
    tagger.module = module  # the layers symplug hooks (embed, blocks.0, ... or phi, pool)
    return tagger


def load_tagger(spec: str, trusted: bool = False) -> CallableTagger:
    """A shipped tagger (a trained one of :data:`SHIPPED_CHECKPOINTS`: ``reference``,
    ``pointnet``, ``pointnet-noaug``, ``part``; or ``mass``, ``pz2``), a checkpoint (``*.pt``, read
    with ``torch.load(weights_only=True)``), ``module:function`` (its score a
    probability, unless the function has a ``units`` attribute, e.g. ``score.units =
    "logit"``) or ``module:name`` of a ready tagger (a :class:`CallableTagger`, e.g. a
    :class:`~symplug_jets.weaver.WeaverTagger`). A ``module:...`` imports the module,
    which runs its code: it is refused unless ``trusted`` (``--trust-model``); any error
    while importing it is an error naming the spec."""
    if spec in SHIPPED_CHECKPOINTS:
        tagger = load_reference(REFERENCE.with_name(SHIPPED_CHECKPOINTS[spec]))
        tagger.name = spec
        return tagger
    if spec.endswith(".pt"):
        return load_reference(spec)
    if spec in SHIPPED:
        return CallableTagger(SHIPPED[spec], spec, units=UNITS[spec])
    if ":" not in spec:
        raise SymplugError(f"unknown tagger {spec!r}: give "
                           f"{', '.join([*SHIPPED_CHECKPOINTS, *SHIPPED])}, a .pt checkpoint "
                           "or module:function")
    fn = import_spec(spec, "tagger", trusted)
    if isinstance(fn, CallableTagger):  # e.g. a WeaverTagger built in the module
        return fn
    return CallableTagger(fn, spec, units=getattr(fn, "units", "probability"))
