"""Render a symplug report.html in headless Chromium and check that its figures show.

    python scripts/screenshot_report.py REPORT.html --png SHOT.png [--height 4000]
    python scripts/screenshot_report.py REPORT.html --png first.png --height 900 --no-check

Takes a screenshot with Debian's ``chromium`` (``apt-get install chromium``) at
``--width`` (default 1400 px, the width the report is designed for) and counts the
saturated (coloured) pixels: with the text drawn black (the report colours its
verdicts, severities and links), the figures are what is coloured (heat maps,
curves). The same page with its images removed is rendered as a control; the check
passes when the report has at least ``--min-fraction`` coloured pixels and the control
has (almost) none. Exit code 0 when the figures show, 1 when not, 2 when Chromium is
missing. ``--no-check`` only writes the screenshot, as a small palette PNG (e.g. the
report's first screen for the docs).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars",
         # paint the whole window before the shot (else its lower tiles may still be blank)
         "--run-all-compositor-stages-before-draw", "--virtual-time-budget=10000"]


def chromium() -> str | None:
    """Path of the Chromium binary, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


WIDTH = 1400  # px: the browser window the report is laid out for
# headless Chromium now and then hangs before its first frame on a busy machine (it
# stalls on D-Bus): a run that passes TIMEOUT_S is killed and retried with a fresh profile
TIMEOUT_S, ATTEMPTS = 60, 3
BLACK_TEXT = "<style>* { color: #000 !important; }</style>"  # measuring: only figures coloured


def screenshot(html: Path, png: Path, width: int = WIDTH, height: int = 4000) -> Path:
    """Render ``html`` (a file) into ``png`` with headless Chromium."""
    binary = chromium()
    if binary is None:
        raise FileNotFoundError("chromium is not installed (apt-get install chromium)")
    for attempt in range(ATTEMPTS):
        with tempfile.TemporaryDirectory() as profile:
            try:
                subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}",
                                f"--window-size={width},{height}",
                                f"--screenshot={png.resolve()}", html.resolve().as_uri()],
                               check=True, capture_output=True, timeout=TIMEOUT_S)
                return png
            except subprocess.TimeoutExpired:
                if attempt == ATTEMPTS - 1:
                    raise
    return png


def coloured_fraction(png: Path) -> float:
    """Fraction of pixels with HSV saturation above 0.35 and value above 0.2."""
    hsv = np.asarray(Image.open(png).convert("RGB").convert("HSV"), dtype=np.float64) / 255.0
    return float(((hsv[..., 1] > 0.35) & (hsv[..., 2] > 0.2)).mean())


def small_png(png: Path) -> Path:
    """Rewrite ``png`` as an optimised 256-colour palette PNG (a fraction of the size)."""
    image = Image.open(png).convert("RGB")
    image.quantize(256, method=Image.Quantize.MEDIANCUT).save(png, optimize=True)
    return png


def check(html: Path, png: Path, height: int = 4000, min_fraction: float = 0.01,
          width: int = WIDTH) -> dict:
    """Screenshot of the report into ``png``; the coloured fractions of the report and of
    an image-less control, both rendered with black text."""
    screenshot(html, png, width=width, height=height)
    page = html.read_text().replace("</head>", BLACK_TEXT + "</head>", 1)
    with tempfile.TemporaryDirectory() as tmp:
        fractions = []
        for name, text in (("report", page), ("control", re.sub(r"<img [^>]*>", "", page))):
            path = Path(tmp) / f"{name}.html"
            path.write_text(text)
            fractions.append(coloured_fraction(
                screenshot(path, Path(tmp) / f"{name}.png", width=width, height=height)))
    fraction, control_fraction = fractions
    return {"coloured_fraction": fraction, "control_fraction": control_fraction,
            "figures_shown": fraction >= min_fraction and control_fraction < min_fraction / 10}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path)
    parser.add_argument("--png", type=Path, default=Path("report.png"))
    parser.add_argument("--width", type=int, default=WIDTH)
    parser.add_argument("--height", type=int, default=4000)
    parser.add_argument("--no-check", action="store_true",
                        help="only write the screenshot, as a small palette PNG")
    parser.add_argument("--min-fraction", type=float, default=0.01)
    args = parser.parse_args()
    if chromium() is None:
        print("chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 2
    if args.no_check:
        small_png(screenshot(args.html, args.png, args.width, args.height))
        print(f"{args.png}: {args.width}x{args.height}, {args.png.stat().st_size} bytes")
        return 0
    result = check(args.html, args.png, args.height, args.min_fraction, args.width)
    print(f"{args.png}: coloured pixels {result['coloured_fraction']:.3f} "
          f"(without images {result['control_fraction']:.4f}); figures shown: "
          f"{result['figures_shown']}")
    return 0 if result["figures_shown"] else 1


if __name__ == "__main__":
    sys.exit(main())
