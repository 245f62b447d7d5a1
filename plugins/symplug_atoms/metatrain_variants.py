"""Variants of metatrain's PET for the remedies study: a minimal inductive bias and the
training without augmentation, both run through metatrain's own ``mtt``.

* **Band-limited edge embedding** (:func:`band_limited_pet`, ``--sh-lmax L``). PET embeds
  each edge in every GNN layer from its raw Cartesian vector and length,
  ``edge_embedder = Linear([x, y, z, r])``, and its attention layers are unconstrained.
  The variant swaps that one linear map for :class:`BandLimitedEdgeEmbedder`,
  ``Linear(vec(Y_l(r_hat) R_n(r)))`` with l <= L: real spherical harmonics (e3nn,
  component normalisation) of the edge direction times a Bessel basis
  ``R_n(r) = sin(n pi r / r_c) / r``, n = 1..8. Everything else (attention, messages,
  heads, conservative forces by autograd, metatrain's O(3) augmentation) is unchanged.
  Guaranteed: with ``L = 0`` every token is a function of distances and species
  only, so the model is exactly O(3) invariant and its forces exactly equivariant (for
  any weights; a distance-only transformer). Not guaranteed: for ``L >= 1`` the
  attention layers create power above L and break the symmetry as the raw PET does
  (the raw input is itself band-limited at l = 1 before its nonlinearities).
* **No augmentation** (:func:`without_augmentation`, ``--no-augmentation``): the
  trainer's ``O3Augmenter.apply_random_augmentations`` (metatrain has no option to
  switch it off) is replaced by the identity.

The patches act on every PET built inside the block: training, ``--restart``, the
export at the end of ``mtt train`` (the exported ``.pt`` is TorchScript and holds the
band-limited embedder, so it runs anywhere metatomic does) and loading a checkpoint.
:func:`sh_lmax_of` reads L from a checkpoint's weights, so symplug loads a band-limited
``.ckpt`` (:class:`~symplug_atoms.metatrain_model.MetatrainModel`) as it loads any other.

Command line, metatrain's own arguments after the variant's options::

    python -m symplug_atoms.metatrain_variants --sh-lmax 0 train options.yaml -o pet.pt
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import inspect
import math
import sys
from typing import Iterator

import torch
from torch import nn

N_RADIAL = 8  # Bessel functions of the band-limited embedding


class BandLimitedEdgeEmbedder(nn.Module):
    """``Linear(vec(Y_l(r_hat) R_n(r)))``, l <= ``lmax``, n = 1..``n_radial``: the
    drop-in for PET's ``edge_embedder``, taking its input ``[x, y, z, r]`` (..., 4) in A
    (padded edges are zero vectors; they give zero radial features, no NaN)."""

    def __init__(self, lmax: int, d_model: int, cutoff: float, n_radial: int = N_RADIAL):
        super().__init__()
        from e3nn.o3 import SphericalHarmonics

        if isinstance(lmax, bool) or not isinstance(lmax, int) or lmax < 0:
            raise ValueError(f"sh_lmax must be an integer >= 0, got {lmax!r}")
        self.lmax = lmax
        self.harmonics = SphericalHarmonics(list(range(lmax + 1)), normalize=False,
                                            normalization="component")
        self.register_buffer("frequencies",
                             torch.arange(1, n_radial + 1, dtype=torch.float32) * math.pi / cutoff)
        self.linear = nn.Linear((lmax + 1) ** 2 * n_radial, d_model)

    def forward(self, edges: torch.Tensor) -> torch.Tensor:
        vectors, r = edges[..., :3], edges[..., 3:]
        real = r > 0
        safe = torch.where(real, r, torch.ones_like(r))
        y = self.harmonics(vectors / safe)  # (..., (lmax + 1)^2); padding: Y_0 only
        radial = torch.where(real, torch.sin(self.frequencies * safe) / safe,
                             torch.zeros_like(safe))  # (..., n_radial)
        return self.linear((y.unsqueeze(-1) * radial.unsqueeze(-2)).flatten(-2))


@contextlib.contextmanager
def band_limited_pet(lmax: int | None) -> Iterator[None]:
    """Every metatrain PET built in the block embeds its edges with
    :class:`BandLimitedEdgeEmbedder` of band ``lmax`` (None: unchanged)."""
    if lmax is None:
        yield
        return
    BandLimitedEdgeEmbedder(lmax, 1, 1.0)  # a bad lmax fails here, before any training
    from metatrain.pet.modules.transformer import CartesianTransformer

    original = CartesianTransformer.__init__
    signature = inspect.signature(original)  # follows __wrapped__ through nested blocks

    @functools.wraps(original)
    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        bound = signature.bind(self, *args, **kwargs).arguments
        self.edge_embedder = BandLimitedEdgeEmbedder(lmax, bound["d_model"], bound["cutoff"])

    CartesianTransformer.__init__ = init
    try:
        yield
    finally:
        CartesianTransformer.__init__ = original


def sh_lmax_of(checkpoint: dict) -> int | None:
    """The band L of a metatrain checkpoint's band-limited PET (None: not one)."""
    for state in (checkpoint.get("best_model_state_dict"), checkpoint.get("model_state_dict")):
        for name, weight in (state or {}).items():
            if name.endswith("edge_embedder.linear.weight"):
                return math.isqrt(weight.shape[1] // N_RADIAL) - 1
    return None


@contextlib.contextmanager
def without_augmentation() -> Iterator[None]:
    """metatrain's training batches are not rotated in the block: its
    ``O3Augmenter.apply_random_augmentations`` is the identity."""
    from metatrain.utils.augmentation import O3Augmenter

    original = O3Augmenter.apply_random_augmentations

    def identity(self, systems, targets, extra_data=None):
        return systems, targets, {} if extra_data is None else extra_data

    O3Augmenter.apply_random_augmentations = identity
    try:
        yield
    finally:
        O3Augmenter.apply_random_augmentations = original


def main(argv: list[str] | None = None) -> int:
    """``mtt`` with the variant's patches; returns metatrain's exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m symplug_atoms.metatrain_variants", allow_abbrev=False,
        description="metatrain's mtt with a band-limited PET and/or without augmentation; "
                    "metatrain's arguments follow the options")
    parser.add_argument("--sh-lmax", type=int, default=None,
                        help="band-limited edge embedding of this band (0: exactly invariant)")
    parser.add_argument("--no-augmentation", action="store_true",
                        help="train without metatrain's random O(3) augmentation")
    args, mtt_args = parser.parse_known_args(argv)
    if args.sh_lmax is not None and args.sh_lmax < 0:
        parser.error(f"--sh-lmax must be >= 0, got {args.sh_lmax}")
    if not mtt_args:
        parser.error("give metatrain's arguments, e.g. train options.yaml -o pet.pt")
    from metatrain.__main__ import main as mtt_main

    with contextlib.ExitStack() as stack:
        stack.enter_context(band_limited_pet(args.sh_lmax))
        if args.no_augmentation:
            stack.enter_context(without_augmentation())
        sys.argv = ["mtt", *mtt_args]
        return mtt_main()


if __name__ == "__main__":
    sys.exit(main())
