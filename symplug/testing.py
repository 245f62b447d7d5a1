"""Equivariance assertions for model authors' own test suites (a pytest plugin).

Installed with symplug through the ``pytest11`` entry point, it provides the
fixture ``assert_equivariant``; the same function is importable::

    from symplug.testing import assert_equivariant

    def test_my_model_is_rotation_invariant():
        assert_equivariant(model, positions, rep="0e", group="O3", degree=4, max_rmse=1e-8)
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

from .equivariance import EquivarianceError, back_transform, equivariance_error
from .groups import Group
from .orbit import call_model
from .quadrature import Grid, quadrature
from .spectra import Spectrum, sector_key, symmetry_content


def rotate_points(x: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """Default action: copies g x of points whose last axis is Cartesian, (B, *x.shape)."""
    x = torch.as_tensor(x)
    return torch.einsum("bij,...j->b...i", matrices.to(x.dtype), x)


def breaking_spectrum(values: torch.Tensor, grid: Grid, rep: str, lmax: int | None) -> Spectrum:
    """Spectrum of z(g) = rho(g)^-1 y(g x) around z(g_0), as in the diagnosis
    (:class:`symplug.orbit.OrbitResult`): all power outside the invariant sector breaks
    equivariance (it sums to A^2), whatever the group and representation."""
    z = back_transform(values, grid, rep)
    return symmetry_content(z - z[0], grid, lmax)


def format_report(grid: Grid, errors: Mapping[str, EquivarianceError],
                  spectra: Mapping[str, Spectrum], max_rmse: float, top: int = 3) -> str:
    """Readable multi-line report: A per output, the worst breaking sectors, the grid."""
    lines = [f"equivariance check on {grid!r}: {grid.rule}"]
    for name, err in errors.items():
        flag = "FAIL" if err.rmse > max_rmse else "ok"
        lines.append(f"  {flag:4s} {name} [{err.rep}]: equivariance RMSE {err.rmse:.3e} "
                     f"(max {max_rmse:.1e}), relative {err.relative:.3e}")
        spec = spectra[name]
        inv = spec.group.invariant_sector
        worst = sorted(((f, k) for k, f in spec.fractions.items() if k != inv), reverse=True)[:top]
        if worst and worst[0][0] > 0:
            lines.append("       worst sectors of rho(g)^-1 y(g x): " + ", ".join(
                f"({sector_key(k)}) {f:.2e}" for f, k in worst)
                + f"; above l={spec.lmax}: {max(spec.truncation, 0.0):.2e}")
    return "\n".join(lines)


def assert_equivariant(model_or_values: Callable | torch.Tensor | Mapping[str, torch.Tensor],
                       x: Any = None, *, rep: str | Mapping[str, str] = "0e",
                       max_rmse: float = 1e-6, group: str | Group = "O3", degree: int = 4,
                       kind: str = "auto", grid: Grid | None = None,
                       action: Callable[[Any, torch.Tensor], Any] | None = None,
                       lmax: int | None = None, chunk_size: int = 256) -> dict[str, EquivarianceError]:
    """Fail with a readable report if an output's equivariance RMSE exceeds ``max_rmse``.

    ``model_or_values`` is either a callable evaluated on ``action(x, matrices)``
    (default: rotate the last, Cartesian axis of ``x``), returning a tensor or a
    mapping of outputs with leading axis over copies, or precomputed values on
    ``grid`` (a tensor, or a mapping of them) with ``values[q] = y(g_q x)``.
    ``rep`` is one representation or a mapping output -> representation.
    Returns the per-output :class:`EquivarianceError` when the check passes.
    """
    __tracebackhide__ = True  # pytest shows the report, not this function's source
    grid = grid or quadrature(group, degree, kind=kind)
    if isinstance(model_or_values, (torch.Tensor, Mapping)):
        values = model_or_values
        if isinstance(values, torch.Tensor):
            values = {"output": values}
    else:
        act = action or rotate_points
        chunks: dict[str, list[torch.Tensor]] = {}
        for index in grid.chunks(chunk_size):
            for name, value in call_model(model_or_values, act(x, grid.matrices[index])).items():
                chunks.setdefault(name, []).append(value.detach())
        values = {name: torch.cat(parts) for name, parts in chunks.items()}
    reps = dict(rep) if isinstance(rep, Mapping) else {name: rep for name in values}
    missing = [name for name in reps if name not in values]
    if missing:
        raise AssertionError(f"no output {missing[0]!r} among {sorted(values)}")
    if lmax is None:
        lmax = grid.moment_degree if grid.moment_degree is not None else 4
    errors = {n: equivariance_error(values[n], grid, r, name=n) for n, r in reps.items()}
    spectra = {n: breaking_spectrum(values[n], grid, r, lmax) for n, r in reps.items()}
    if any(e.rmse > max_rmse for e in errors.values()):
        raise AssertionError(format_report(grid, errors, spectra, max_rmse))
    return errors


try:  # the fixture exists only where pytest does
    import pytest

    @pytest.fixture(name="assert_equivariant")
    def _assert_equivariant_fixture():
        """The :func:`assert_equivariant` check, as a fixture."""
        return assert_equivariant

except ImportError:  # pragma: no cover
    pass
