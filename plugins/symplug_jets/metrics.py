"""Tagging performance in the field's conventions: ROC, AUC, background rejection.

1/eps_B is only as good as the number of background jets behind it: :func:`rejection`
gives it with its binomial uncertainty, or, when fewer than one background jet passes
the working point, the bound "> N_B" (N_B background jets: the largest rejection the
test set resolves); :func:`format_rejection` writes either as text.

NaN or inf scores (no ordering of the jets) or one class only make the ROC, AUC and
1/eps_B undefined: an error here, never a number; :func:`undefined` says why (a
diagnosis states them undefined instead). Classes are bool or 0/1, never thresholded.
"""

from __future__ import annotations

import math

import numpy as np

from symplug import SymplugError


def undefined(scores: np.ndarray, is_signal: np.ndarray) -> str | None:
    """Why the ROC, AUC and 1/eps_B of these jets are undefined (NaN or inf scores, one
    class only, no jets), or None: they are defined."""
    scores, is_signal = _inputs(scores, is_signal)
    bad = np.nonzero(~np.isfinite(scores))[0]
    if len(bad):
        return (f"{len(bad)} of {len(scores)} scores are NaN or inf (first: jet "
                f"{int(bad[0])}): no ordering of the jets")
    if len(scores) == 0:
        return "no jets"
    if is_signal.all() or not is_signal.any():
        return (f"only {'signal' if is_signal.any() else 'background'} jets "
                f"({len(scores)}): the ROC needs both signal and background jets")
    return None


def _inputs(scores, is_signal) -> tuple[np.ndarray, np.ndarray]:
    """(N,) float scores and (N,) bool classes, checked: the classes bool or 0/1."""
    scores = np.asarray(scores, dtype=np.float64)
    classes = np.asarray(is_signal)
    if scores.ndim != 1 or classes.shape != scores.shape:
        raise SymplugError(f"scores {scores.shape} and is_signal {classes.shape} must be "
                           "(N,) arrays of the same length")
    if classes.dtype != bool:
        with np.errstate(invalid="ignore"):
            bad = np.nonzero(~np.isin(classes.astype(np.float64), (0.0, 1.0)))[0]
        if len(bad):
            raise SymplugError(f"is_signal of jet {int(bad[0])} is {classes[bad[0]]!r}; "
                               "classes must be bool or 0/1")
    return scores, classes.astype(bool)


def roc(scores: np.ndarray, is_signal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signal and background efficiencies (eps_S, eps_B) for every threshold, ties
    grouped; undefined (an error) for NaN or inf scores or one class (:func:`undefined`)."""
    reason = undefined(scores, is_signal)
    if reason:
        raise SymplugError(f"ROC, AUC and 1/eps_B undefined: {reason}")
    scores, is_signal = _inputs(scores, is_signal)
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], is_signal[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # end of each block of equal scores
    tps, fps = np.cumsum(y)[last], np.cumsum(~y)[last]
    return np.r_[0.0, tps / y.sum()], np.r_[0.0, fps / (~y).sum()]


def auc(scores: np.ndarray, is_signal: np.ndarray) -> float:
    """Area under the ROC curve (trapezoids; ties count one half)."""
    eps_s, eps_b = roc(scores, is_signal)
    return float(np.trapezoid(eps_s, eps_b))


def _eps_b(scores: np.ndarray, is_signal: np.ndarray, eps_s: float) -> float:
    """eps_B at signal efficiency ``eps_s``, interpolated linearly between the last ROC
    point below ``eps_s`` and the first point reaching it."""
    if not 0.0 < eps_s <= 1.0:
        raise SymplugError(f"signal efficiency must be in (0, 1], got {eps_s}")
    sig, bkg = roc(scores, is_signal)
    k = int(np.argmax(sig >= eps_s))
    lo, hi = (sig[k - 1], bkg[k - 1]), (sig[k], bkg[k])
    eps_b = hi[1] if hi[0] == lo[0] else lo[1] + (eps_s - lo[0]) * (hi[1] - lo[1]) / (hi[0] - lo[0])
    return float(eps_b)


def background_rejection(scores: np.ndarray, is_signal: np.ndarray, eps_s: float) -> float:
    """1 / eps_B at signal efficiency ``eps_s`` (eps_B interpolated linearly between the
    last ROC point below ``eps_s`` and the first point reaching it); ``inf`` when no
    background jet passes. :func:`rejection` says how well the test set resolves it."""
    eps_b = _eps_b(scores, is_signal, eps_s)
    return float("inf") if eps_b <= 0 else 1.0 / eps_b


def rejection(scores: np.ndarray, is_signal: np.ndarray, eps_s: float) -> dict:
    """1/eps_B at ``eps_s`` with its statistical resolution on these jets (JSON-ready,
    never inf or NaN):

    * ``n_background``: N_B, the background jets; ``n_background_passing``: eps_B x N_B,
      those above the working point's threshold (interpolated, so possibly fractional);
    * ``resolved``: at least one background jet passes. Then ``value`` = 1/eps_B and
      ``uncertainty`` its binomial standard error at a fixed threshold,
      sqrt(eps_B (1 - eps_B) / N_B) / eps_B^2 = value sqrt((1 - eps_B) / passing);
      ``lower_bound`` is None;
    * otherwise ``value`` and ``uncertainty`` are None and ``lower_bound`` is N_B: the
      rejection exceeds the largest value the test set resolves ("> N_B").
    """
    eps_b = _eps_b(scores, is_signal, eps_s)
    is_signal = _inputs(scores, is_signal)[1]
    n_b = int((~is_signal).sum())
    passing = eps_b * n_b
    out = {"eps_s": float(eps_s), "eps_b": eps_b, "n_background": n_b,
           "n_background_passing": passing}
    if passing < 1.0 - 1e-9:
        return {**out, "value": None, "uncertainty": None, "lower_bound": float(n_b),
                "resolved": False}
    value = 1.0 / eps_b
    error = value * math.sqrt(max(1.0 - eps_b, 0.0) / passing)
    return {**out, "value": value, "uncertainty": error, "lower_bound": None, "resolved": True}


def format_rejection(record: dict) -> str:
    """``"102 ± 46"`` (1/eps_B and its binomial uncertainty) or ``"> 204"`` (no
    background jet of the 204 passes)."""
    if not record["resolved"]:
        return f"> {record['n_background']}"
    value, error = record["value"], record["uncertainty"]
    digits = 0 if error >= 2 else 1 if error >= 0.2 else 2
    return f"{value:.{digits}f} ± {error:.{digits}f}"


def rejection_text(record) -> str:
    """One phrase for a report: ``"102 ± 46 (4.9 of 204 background jets pass)"`` or
    ``"> 204 (no background jet of 204 passes: the largest value these jets resolve)"``;
    a plain number (a result written before the resolution was recorded) as it is."""
    if not isinstance(record, dict):
        return f"{record:.1f}"
    if not record["resolved"]:
        return (f"{format_rejection(record)} (no background jet of {record['n_background']} "
                f"passes: the largest value these jets resolve)")
    return (f"{format_rejection(record)} ({record['n_background_passing']:.3g} of "
            f"{record['n_background']} background jets pass)")
