"""Render a symplug report.html in headless Chromium and check that its figures show.

    python scripts/screenshot_report.py REPORT.html --png SHOT.png [--height 4000]

Takes a screenshot with Debian's ``chromium`` (``apt-get install chromium``) and
counts the saturated (coloured) pixels: report text is black and grey, the
figures are coloured (heat maps, curves). The same page with its images removed
is rendered as a control; the check passes when the report has at least
``--min-fraction`` coloured pixels and the control has (almost) none. Exit code 0
when the figures show, 1 when not, 2 when Chromium is missing.
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
         "--hide-scrollbars"]


def chromium() -> str | None:
    """Path of the Chromium binary, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot(html: Path, png: Path, width: int = 1200, height: int = 4000) -> Path:
    """Render ``html`` (a file) into ``png`` with headless Chromium."""
    binary = chromium()
    if binary is None:
        raise FileNotFoundError("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}",
                        f"--window-size={width},{height}", f"--screenshot={png.resolve()}",
                        html.resolve().as_uri()], check=True, capture_output=True, timeout=120)
    return png


def coloured_fraction(png: Path) -> float:
    """Fraction of pixels with HSV saturation above 0.35 and value above 0.2."""
    hsv = np.asarray(Image.open(png).convert("RGB").convert("HSV"), dtype=np.float64) / 255.0
    return float(((hsv[..., 1] > 0.35) & (hsv[..., 2] > 0.2)).mean())


def check(html: Path, png: Path, height: int = 4000, min_fraction: float = 0.01) -> dict:
    """Screenshot of the report and of an image-less control, with their coloured fractions."""
    screenshot(html, png, height=height)
    with tempfile.TemporaryDirectory() as tmp:
        control = Path(tmp) / "control.html"
        control.write_text(re.sub(r"<img [^>]*>", "", html.read_text()))
        control_png = screenshot(control, Path(tmp) / "control.png", height=height)
        control_fraction = coloured_fraction(control_png)
    fraction = coloured_fraction(png)
    return {"coloured_fraction": fraction, "control_fraction": control_fraction,
            "figures_shown": fraction >= min_fraction and control_fraction < min_fraction / 10}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path)
    parser.add_argument("--png", type=Path, default=Path("report.png"))
    parser.add_argument("--height", type=int, default=4000)
    parser.add_argument("--min-fraction", type=float, default=0.01)
    args = parser.parse_args()
    if chromium() is None:
        print("chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 2
    result = check(args.html, args.png, args.height, args.min_fraction)
    print(f"{args.png}: coloured pixels {result['coloured_fraction']:.3f} "
          f"(without images {result['control_fraction']:.4f}); figures shown: "
          f"{result['figures_shown']}")
    return 0 if result["figures_shown"] else 1


if __name__ == "__main__":
    sys.exit(main())
