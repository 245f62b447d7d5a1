"""Model evaluations per answer: symplug's grids by purpose against the rules that
metatomic (``metatomic.torch.o3.SymmetrizedModel``) and metatomic-ase
(``metatomic_ase.SymmetrizedCalculator``) use for the same band.

    python benchmarks/bench_grids.py [--quick] [--json PATH]

A model evaluation (one rotated copy through the model) is the whole cost of a
diagnosis or a symmetrised call, so the counts are the performance. Each count of
symplug's is measured, not computed: a counting model is diagnosed with
``symplug.diagnose`` (the grid and its convergence check) and called through
``symplug_atoms.SymmetrizedCalculator`` on a Cu13 cluster, and the copies it saw are
tallied. metatomic's counts are the sizes of the rules its own code builds
(``choose_quadrature`` + ``get_rotation_quadrature``, both cosets; metatomic-ase's
``_choose_quadrature`` + ``_get_quadrature`` with inversion). "before" is this
project's previous default: the diagnosis grid (exact to 2L) for symmetrisation, and
the grid plus a degree + 2 grid for the convergence check.

Goals (issue 14): symmetrised call at most 0.6x metatomic-ase's evaluations for
L = 1, 3, 5; certified diagnosis (grid + check) at most 2x metatomic's grid for the
same character l_max.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import symplug
from symplug.testing import rotate_points


class CountingCloud(torch.nn.Module):
    """An invariant energy plus a small band-1 term; counts the copies it evaluates."""

    copies = 0

    def forward(self, pos):
        CountingCloud.copies += pos.shape[0]
        return {"energy": torch.cdist(pos, pos).sum((1, 2)) + 1e-3 * pos[:, 0, 0]}


def diagnosis_evaluations(degree: int) -> int:
    domain = symplug.Domain(name="points", act=rotate_points,
                            outputs={"energy": symplug.Output("0e", "a.u.")})
    cloud = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    CountingCloud.copies = 0
    symplug.diagnose(CountingCloud(), [cloud], domain, degree=degree, progress=False)
    return CountingCloud.copies


def symmetrized_evaluations(degree: int) -> int:
    import ase.cluster
    from ase.calculators.emt import EMT

    import symplug_atoms

    class CountingEMT(EMT):
        calls = 0

        def calculate(self, *args, **kwargs):
            CountingEMT.calls += 1
            super().calculate(*args, **kwargs)

    atoms = ase.cluster.Icosahedron("Cu", 2)
    atoms.calc = symplug_atoms.SymmetrizedCalculator(CountingEMT(), degree=degree)
    atoms.get_forces()
    return CountingEMT.calls


def metatomic_model_grid(character_lmax: int) -> int:
    """``SymmetrizedModel`` (energy, ``max_angular_momentum_character`` = L): a Lebedev x
    K rule for band max(1, 2L), times its two cosets."""
    from metatomic.torch.o3._quadrature import choose_quadrature, get_rotation_quadrature

    rotations, _ = get_rotation_quadrature(*choose_quadrature(max(1, 2 * character_lmax)))
    return 2 * len(rotations)


def metatomic_ase_grid(l_max: int) -> int:
    from metatomic_ase._symmetry import _choose_quadrature, _get_quadrature

    return len(_get_quadrature(*_choose_quadrature(l_max), True)[0])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="bands 1 and 2 only")
    parser.add_argument("--json", type=Path, help="write the table as JSON here")
    args = parser.parse_args(argv)

    sym_bands = (1, 3) if args.quick else (1, 2, 3, 4, 5, 6)
    diag_bands = (1, 2) if args.quick else (1, 2, 3, 4)
    out = {"symmetrized": [], "diagnosis": []}
    print("symmetrised call, exact to band L (O(3)): model evaluations per call")
    print(f"{'L':>3} {'symplug':>8} {'before':>7} {'metatomic-ase':>14} {'ratio':>6}  rule")
    for L in sym_bands:
        ours = symmetrized_evaluations(L)
        before = symplug.quadrature("O3", L, kind="lebedev").size
        theirs = metatomic_ase_grid(L)
        rule = symplug.quadrature("O3", L, purpose="mean").rule.split(";")[0]
        out["symmetrized"].append({"band": L, "symplug": ours, "before": before,
                                   "metatomic_ase": theirs, "ratio": ours / theirs, "rule": rule})
        print(f"{L:>3} {ours:>8} {before:>7} {theirs:>14} {ours / theirs:>6.2f}  {rule}")
    print("\ncertified diagnosis, A and B to band L with the convergence check: evaluations "
          "per sample")
    print(f"{'L':>3} {'symplug':>8} {'before':>7} {'metatomic grid':>15} {'ratio':>6}  rule")
    for L in diag_bands:
        ours = diagnosis_evaluations(L)
        before = (symplug.quadrature("O3", L, kind="lebedev").size
                  + symplug.quadrature("O3", L + 2, kind="lebedev").size)
        theirs = metatomic_model_grid(L)
        rule = symplug.quadrature("O3", L).rule.split(";")[0]
        out["diagnosis"].append({"band": L, "symplug": ours, "before": before,
                                 "metatomic_grid": theirs, "ratio": ours / theirs, "rule": rule})
        print(f"{L:>3} {ours:>8} {before:>7} {theirs:>15} {ours / theirs:>6.2f}  {rule} + turned copy")
    if args.json:
        from symplug.result import write_json

        write_json(out, args.json)
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
