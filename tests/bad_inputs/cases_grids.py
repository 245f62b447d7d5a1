"""Grids and quadrature requests (``symplug quadrature``, ``--degree``/``--kind``)."""

from . import ERROR, Case

CASES = [
    Case("grids/quadrature-unknown-group", "grids", ERROR, r"unknown group 'U1'",
         argv=["quadrature", "--group", "U1"]),
    Case("grids/quadrature-negative-degree", "grids", ERROR, r"degree",
         argv=["quadrature", "--degree", "-1"]),
    Case("grids/quadrature-finite-too-high", "grids", ERROR, r"finite",
         argv=["quadrature", "--kind", "finite", "--degree", "6"]),
    Case("grids/quadrature-haar-without-n", "grids", ERROR, r"--n|n=",
         argv=["quadrature", "--kind", "haar"]),
]
