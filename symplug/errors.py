"""Exceptions raised by symplug.

Every error a user can cause derives from :class:`SymplugError`; the CLI prints
its message on one line and exits with status 2, without a traceback.
"""

from __future__ import annotations


class SymplugError(Exception):
    """A problem with the user's input, model, data or configuration."""


class RepresentationError(SymplugError, ValueError):
    """A representation string is malformed, or values do not match its size."""


class GridError(SymplugError, ValueError):
    """A quadrature cannot deliver what was asked of it (group, degree, l_max)."""


class AliasingError(SymplugError, ArithmeticError):
    """A variance came out negative beyond round-off: the grid aliases the response."""


class PluginError(SymplugError):
    """A plugin failed to import or broke the hook contract."""
