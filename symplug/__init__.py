"""symplug: how well unconstrained ML models have learned physical symmetry.

The domain-free core: exact group quadratures, the equivariance error A of
outputs and the symmetry content B of any representation, Lie derivatives, the
orbit engine and the pluggy contract for domain adapters. See DESIGN §1 for the
mathematics and the README for a tour.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("symplug")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

from .dataparallel import Partitions, connect, partition
from .diagnose import convergence, diagnose, summarize
from .equivariance import (BiasVariance, DatasetError, EquivarianceError, aggregate_errors,
                           bias_variance, equivariance_error)
from .errors import AliasingError, GridError, PluginError, RepresentationError, SymplugError
from .findings import Finding, findings
from .groups import generators, haar
from .lie import lie_derivatives
from .markers import hookimpl, hookspec
from .orbit import evaluate_orbit
from .quadrature import Grid, quadrature
from .records import Domain, MeanTerm, Output, ReportSection, SummaryStage, TrainingTask
from .representations import Representation, representation
from .spectra import Spectrum, aggregate_spectra, symmetry_content
from .wigner import wigner_D

__all__ = [
    "AliasingError", "BiasVariance", "DatasetError", "Domain", "EquivarianceError", "Finding",
    "Grid", "GridError", "MeanTerm", "Output", "Partitions", "PluginError", "ReportSection",
    "Representation", "RepresentationError", "Spectrum", "SummaryStage", "SymplugError",
    "TrainingTask", "__version__", "aggregate_errors", "aggregate_spectra", "bias_variance",
    "connect", "convergence", "diagnose", "partition", "summarize",
    "equivariance_error", "evaluate_orbit", "findings", "generators", "haar", "hookimpl",
    "hookspec", "lie_derivatives", "quadrature", "representation", "symmetry_content",
    "wigner_D",
]
