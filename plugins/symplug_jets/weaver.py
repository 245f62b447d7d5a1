"""weaver-style taggers: ``forward(points, features, lorentz_vectors, mask)`` with
inputs (N, C, P), plus the feature recipe that a weaver data config describes.

:func:`kin_features` is the recipe of ParT's JetClass "kin" configuration: points
(delta eta, delta phi), 7 features (delta eta, delta phi, log pT, log E, log pT/pT_jet,
log E/E_jet, delta R, standardised as in that config) and the (px, py, pz, E) vectors.
All are recomputed from the transformed 4-momenta. :class:`ParticleTransformerWrapper`
gives weaver-core's ``ParticleTransformer`` that signature, as weaver's example
network files do.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable

import torch

from symplug import SymplugError

from .callable_tagger import CallableTagger
from .constituents import leading

# ParT's configuration in its authors' network file (particle_transformer,
# networks/example_ParticleTransformer.py): 2.1 M parameters with 7 kin features.
PART_DEFAULTS = {"pair_input_dim": 4, "use_pre_activation_pair": False,
                 "embed_dims": [128, 512, 128], "pair_embed_dims": [64, 64, 64],
                 "num_heads": 8, "num_layers": 8, "num_cls_layers": 2, "block_params": None,
                 "cls_block_params": {"dropout": 0, "attn_dropout": 0, "activation_dropout": 0},
                 "fc_params": [], "activation": "gelu", "trim": True, "for_inference": False}


def kin_features(p4: torch.Tensor, mask: torch.Tensor, length: int | None = None):
    """(points (N, 2, P), features (N, 7, P), lorentz_vectors (N, 4, P), mask (N, 1, P));
    with ``length``, of the leading ``length`` constituents in pT only (P = ``length``),
    as weaver's input ``length`` keeps them from pT-ordered files; the jet is the sum of
    all constituents."""
    jet = (p4 * mask.to(p4.dtype)[..., None]).sum(dim=1)
    if length is not None:
        p4, mask = leading(p4, mask, length)
    m = mask.to(p4.dtype)
    e, px, py, pz = p4.unbind(-1)
    pt = torch.hypot(px, py).clamp_min(1e-30)
    jet_pt = torch.hypot(jet[:, 1], jet[:, 2])
    deta = torch.asinh(pz / pt) - torch.asinh(jet[:, 3] / jet_pt)[:, None]
    dphi = torch.remainder(torch.atan2(py, px) - torch.atan2(jet[:, 2], jet[:, 1])[:, None]
                           + torch.pi, 2 * torch.pi) - torch.pi
    e_safe = e.clamp_min(1e-30)
    feats = torch.stack([deta, dphi, (torch.log(pt) - 1.7) * 0.7, (torch.log(e_safe) - 2.0) * 0.7,
                         (torch.log(pt / jet_pt[:, None]) + 4.7) * 0.7,
                         (torch.log(e_safe / jet[:, :1]) + 4.7) * 0.7,
                         (torch.hypot(deta, dphi) - 0.2) * 4.0], dim=1) * m[:, None]
    points = torch.stack([deta, dphi], dim=1) * m[:, None]
    vectors = torch.stack([px, py, pz, e], dim=1) * m[:, None]
    return points, feats, vectors, m[:, None]


class ParticleTransformerWrapper(torch.nn.Module):
    """weaver-core's ParticleTransformer behind the weaver signature (layers: ``mod.*``)."""

    def __init__(self, **kwargs):
        super().__init__()
        try:
            from weaver.nn.model.ParticleTransformer import ParticleTransformer
        except ImportError as exc:
            raise SymplugError("ParticleTransformerWrapper needs weaver-core: "
                               "pip install weaver-core") from exc
        try:
            self.mod = ParticleTransformer(**kwargs)
        except Exception as exc:  # an unknown or inconsistent config entry
            raise SymplugError(f"ParticleTransformer config {sorted(kwargs)}: "
                               f"{type(exc).__name__}: {' '.join(str(exc).split())}") from exc

    def forward(self, points, features, lorentz_vectors, mask):
        return self.mod(features, v=lorentz_vectors, mask=mask)

    def layer_names(self) -> list[str]:
        """The hidden layers symplug tracks, input to output: the particle embedding,
        every particle-attention block and every class-attention block."""
        return (["mod.embed"] + [f"mod.blocks.{i}" for i in range(len(self.mod.blocks))]
                + [f"mod.cls_blocks.{i}" for i in range(len(self.mod.cls_blocks))])


def part_config(input_dim: int = 7, num_classes: int = 2, **overrides) -> dict:
    """ParT's constructor arguments: :data:`PART_DEFAULTS` with ``overrides``."""
    return {"input_dim": int(input_dim), "num_classes": int(num_classes),
            **PART_DEFAULTS, **overrides}


def load_part(saved: dict, path: str | Path, dtype: torch.dtype = torch.float64) -> "WeaverTagger":
    """A ParT trained by weaver's own loop (``symplug_jets.train_part``) from its checkpoint
    ``saved`` = {"config": {"arch": "weaver_part", "length": P, **ParT arguments},
    "state_dict": ...}, on the :func:`kin_features` recipe of ``top_kin.yaml`` (the
    leading P constituents)."""
    config = {k: v for k, v in saved["config"].items() if k not in ("arch", "length")}
    length = saved["config"].get("length")
    module = ParticleTransformerWrapper(**config)
    try:
        module.load_state_dict(saved["state_dict"])
    except Exception as exc:
        raise SymplugError(f"{path}: the ParT weights do not fit its config "
                           f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from exc
    return WeaverTagger(module.to(dtype), partial(kin_features, length=length), name="part")


class WeaverTagger(CallableTagger):
    """A weaver-signature module and its feature recipe as a symplug tagger; the score
    is the softmax over the module's class logits, (N, C): probabilities."""

    def __init__(self, module: torch.nn.Module, recipe: Callable = kin_features,
                 name: str = "weaver"):
        if not isinstance(module, torch.nn.Module):
            raise SymplugError(f"WeaverTagger needs a torch.nn.Module, got {type(module).__name__}")
        if not callable(recipe):
            raise SymplugError(f"WeaverTagger recipe must be callable, got {type(recipe).__name__}")
        self.module = module.eval()
        self._rows = 0
        params = list(module.parameters())
        dtype = params[0].dtype if params else torch.float64

        def score(p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            inputs = recipe(p4.to(dtype), mask)
            if not isinstance(inputs, (tuple, list)) or len(inputs) != 4:
                raise SymplugError(f"{name}: the recipe must return (points, features, "
                                   f"lorentz_vectors, mask), got {type(inputs).__name__}")
            self._rows = p4.shape[0]
            logits = self.module(*inputs)
            if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[1] < 2 \
                    or logits.shape[0] != p4.shape[0]:
                shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else \
                    type(logits).__name__
                raise SymplugError(f"{name}: the module returned {shape} for {p4.shape[0]} "
                                   "jets; expected (N, C >= 2) class logits")
            return torch.softmax(logits, dim=-1)

        super().__init__(score, name, units="probability")

    def split_layer(self, name: str, tensor: torch.Tensor, copies: int) -> torch.Tensor:
        """Copy-major split of a captured activation; ParT's blocks are sequence-first
        (P, N, C) and are transposed first."""
        if tensor.shape[0] != self._rows and tensor.ndim > 1 and tensor.shape[1] == self._rows:
            tensor = tensor.transpose(0, 1)
        if tensor.shape[0] != self._rows:
            raise SymplugError(f"layer {name!r}: no axis of size {self._rows} (jets in the batch) "
                               f"in shape {tuple(tensor.shape)}")
        return tensor.reshape(copies, -1, *tensor.shape[2:]) if tensor.ndim > 2 else \
            tensor.reshape(copies, -1)
