"""symplug: how well unconstrained ML models have learned physical symmetry.

The domain-free core: exact group quadratures, the equivariance error A of
outputs and the symmetry content B of any representation, Lie derivatives, the
orbit engine and the pluggy contract for domain adapters. See the README for a tour
and docs/ for the mathematics and conventions.
"""

import sys
from importlib.metadata import PackageNotFoundError, version
from types import ModuleType

try:
    __version__ = version("symplug")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

from .errors import AliasingError, GridError, PluginError, RepresentationError, SymplugError
from .markers import hookimpl, hookspec
from .records import (Domain, Lazy, MeanTerm, Output, ReportSection, SummaryStage, TrainingTask,
                      lazy)

# The numerical API is imported on first use, so that `symplug --version`, `--help` and
# `plugins` start without importing torch and e3nn (PEP 562 module __getattr__).
_LAZY = {
    "Partitions": "dataparallel", "connect": "dataparallel", "partition": "dataparallel",
    "convergence": "diagnose", "diagnose": "diagnose", "diagnosis_of": "diagnose",
    "summarize": "orbit_pass", "Diagnosis": "diagnosis",
    "BiasVariance": "equivariance", "DatasetError": "equivariance",
    "EquivarianceError": "equivariance", "aggregate_errors": "equivariance",
    "bias_variance": "equivariance", "equivariance_error": "equivariance",
    "Finding": "findings", "findings": "findings",
    "Group": "groups", "generators": "groups", "haar": "groups",
    "lie_derivatives": "lie", "evaluate_orbit": "orbit",
    "Grid": "quadrature", "quadrature": "quadrature",
    "Representation": "representations", "representation": "representations",
    "Spectrum": "spectra", "aggregate_spectra": "spectra", "symmetry_content": "spectra",
    "wigner_D": "wigner",
}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'symplug' has no attribute {name!r}")


class _Package(ModuleType):
    """The import system binds every imported submodule as an attribute of its package;
    three functions share their module's name (``symplug.quadrature``, ``diagnose``,
    ``findings``), and the function is the public API, as with eager imports."""

    def __setattr__(self, name: str, value) -> None:
        if not (isinstance(value, ModuleType) and _LAZY.get(name) == name):
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AliasingError", "BiasVariance", "DatasetError", "Diagnosis", "Domain", "EquivarianceError",
    "Finding", "Grid", "GridError", "Group", "Lazy", "MeanTerm", "Output", "Partitions",
    "PluginError",
    "ReportSection", "Representation", "RepresentationError", "Spectrum", "SummaryStage",
    "SymplugError",
    "TrainingTask", "__version__", "aggregate_errors", "aggregate_spectra", "bias_variance",
    "connect", "convergence", "diagnose", "diagnosis_of", "partition", "summarize",
    "equivariance_error", "evaluate_orbit", "findings", "generators", "haar", "hookimpl",
    "hookspec", "lazy", "lie_derivatives", "quadrature", "representation", "symmetry_content",
    "wigner_D",
]
