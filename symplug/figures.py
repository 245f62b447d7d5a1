"""matplotlib figures as PNG: one backend (Agg, no screen) and one way to render, shared by
the report, the training track and the plugins."""

from __future__ import annotations

import io
import os
from pathlib import Path

from .result import write_bytes


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (figures rendered to files, no screen)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig, dpi: int = 100, tight: bool = True) -> bytes:
    """A matplotlib figure as PNG bytes at ``dpi`` (cropped to its content with ``tight``),
    the figure closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, **({"bbox_inches": "tight"} if tight else {}))
    pyplot().close(fig)
    return buffer.getvalue()


def write_figure(fig, path: str | os.PathLike, dpi: int = 100, tight: bool = True) -> Path:
    """:func:`figure_png` written atomically to ``path``."""
    return write_bytes(figure_png(fig, dpi=dpi, tight=tight), path)
