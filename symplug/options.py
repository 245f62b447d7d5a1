"""argparse ``type=`` helpers for option ranges: a bad value is argparse's one-line error
naming the option (``symplug diagnose: error: argument --degree: must be >= 1, got 0``),
exit status 2."""

from __future__ import annotations

import argparse
import math
from typing import Callable


def _number(text: str, kind: type) -> int | float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None


def int_at_least(low: int) -> Callable[[str], int]:
    """An integer >= ``low``."""
    def parse(text: str) -> int:
        value = _number(text, int)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value
    parse.__name__ = f"integer >= {low}"
    return parse


positive_int = int_at_least(1)
nonnegative_int = int_at_least(0)


def finite_float(text: str) -> float:
    """A finite number (no nan, inf)."""
    value = _number(text, float)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {text}")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number >= 0."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value:g}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value:g}")
    return value


def float_at_most(high: float, why: str) -> Callable[[str], float]:
    """A finite number in (0, ``high``]; ``why`` says what a larger one would break."""
    def parse(text: str) -> float:
        value = positive_float(text)
        if value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high:g}, got {value:g} ({why})")
        return value
    parse.__name__ = f"number in (0, {high:g}]"
    return parse


def open_fraction(text: str) -> float:
    """A number in the open interval (0, 1)."""
    value = finite_float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {value:g}")
    return value


def memory_size(text: str) -> int:
    """A memory size in bytes, e.g. ``8G``, ``512M`` (:func:`symplug.memory.parse_size`)."""
    from .errors import SymplugError
    from .memory import parse_size

    try:
        return parse_size(text)
    except SymplugError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def add_memory_option(parser: argparse.ArgumentParser) -> None:
    """``--max-memory SIZE``: the run's peak-memory budget (:mod:`symplug.memory`)."""
    parser.add_argument("--max-memory", metavar="SIZE", type=memory_size,
                        help="peak memory budget of the run, e.g. 8G or 512M (default: 60%% "
                        "of the machine's memory, less on a busy machine); work is split to "
                        "stay under it and requests that cannot fit are refused up front")


def add_trust_option(parser: argparse.ArgumentParser) -> None:
    """``--trust-model``: for every command that loads a model."""
    parser.add_argument("--trust-model", action="store_true",
                        help="the model file or module:attribute is trusted to run code when "
                        "loaded (a metatrain .ckpt is unpickled; a module is imported); "
                        "without it such models are refused")
