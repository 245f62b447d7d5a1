"""Tagging performance in the field's conventions: ROC, AUC, background rejection."""

from __future__ import annotations

import numpy as np

from symplug import SymplugError


def roc(scores: np.ndarray, is_signal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signal and background efficiencies (eps_S, eps_B) for every threshold, ties grouped."""
    scores = np.asarray(scores, dtype=np.float64)
    is_signal = np.asarray(is_signal, dtype=bool)
    if is_signal.all() or not is_signal.any():
        raise SymplugError("the ROC needs both signal and background jets")
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], is_signal[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # end of each block of equal scores
    tps, fps = np.cumsum(y)[last], np.cumsum(~y)[last]
    return np.r_[0.0, tps / y.sum()], np.r_[0.0, fps / (~y).sum()]


def auc(scores: np.ndarray, is_signal: np.ndarray) -> float:
    """Area under the ROC curve (trapezoids; ties count one half)."""
    eps_s, eps_b = roc(scores, is_signal)
    return float(np.trapezoid(eps_s, eps_b))


def background_rejection(scores: np.ndarray, is_signal: np.ndarray, eps_s: float) -> float:
    """1 / eps_B at signal efficiency ``eps_s``: eps_B interpolated linearly between the
    last ROC point below ``eps_s`` and the first point reaching it."""
    if not 0.0 < eps_s <= 1.0:
        raise SymplugError(f"signal efficiency must be in (0, 1], got {eps_s}")
    sig, bkg = roc(scores, is_signal)
    k = int(np.argmax(sig >= eps_s))
    lo, hi = (sig[k - 1], bkg[k - 1]), (sig[k], bkg[k])
    eps_b = hi[1] if hi[0] == lo[0] else lo[1] + (eps_s - lo[0]) * (hi[1] - lo[1]) / (hi[0] - lo[0])
    return float("inf") if eps_b <= 0 else 1.0 / float(eps_b)
