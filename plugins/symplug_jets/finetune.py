"""Augmented fine-tuning of torch taggers (the jets domains' ``training_task``).

Training items are single jets (constituents, mask, top/QCD label) taken from the
domain's jet blocks; a batch is ``{"p4" (J, P, 4) float64 GeV, "mask" (J, P),
"target" (J,) 1 for signal}``, which the task's ``act`` rotates jet by jet (labels
are invariant). The loss is the cross-entropy of the two logits (a
:class:`~symplug.MeanTerm` over jets); the penalties compare the signal probability
``score`` (``0e``).
"""

from __future__ import annotations

import copy
from functools import partial
from typing import Sequence

import numpy as np
import torch

from symplug import MeanTerm, SymplugError, TrainingTask

from .action import rotate_each
from .domain import signal_label
from .taggers import CallableTagger
from .train_tagger import evaluate as tagging_metrics


def _jets(samples: Sequence[dict]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(p4, mask, is_signal) of all jets in the blocks, checked for labels."""
    if not samples:
        raise SymplugError("no jets to fine-tune on")
    if any("labels" not in block for block in samples):
        raise SymplugError("fine-tuning needs labelled jets (label_* branches)")
    names = samples[0]["label_names"]
    column = names.index(signal_label(names))
    p4 = torch.cat([torch.as_tensor(b["p4"], dtype=torch.float64) for b in samples])
    mask = torch.cat([torch.as_tensor(b["mask"]).bool() for b in samples])
    labels = np.concatenate([np.asarray(b["labels"], dtype=np.float64)[:, column] for b in samples])
    _check_finite(p4[mask], "constituent four-momenta 'p4'")
    _check_finite(torch.from_numpy(labels), f"label {names[column]!r}")
    target = torch.from_numpy(labels > 0.5)
    return p4, mask, target.long()


def _check_finite(values: torch.Tensor, what: str) -> None:
    """Refuse NaN or inf in ``values`` (fine-tuning on them writes NaN weights)."""
    bad = int((~torch.isfinite(values)).sum())
    if bad:
        raise SymplugError(f"{what} hold {bad} non-finite value(s): cannot fine-tune on them")


def _collate(items: Sequence[tuple]) -> dict:
    p4, mask, target = zip(*items)
    return {"p4": torch.stack(p4), "mask": torch.stack(mask), "target": torch.stack(target)}


def _loss(batch: dict, pred: dict[str, torch.Tensor]) -> dict[str, MeanTerm]:
    """Cross-entropy of the two logits, summed over the jets (its mean: one term)."""
    return {"cross_entropy": MeanTerm(torch.nn.functional.cross_entropy(
        pred["logits"], batch["target"], reduction="sum"), float(len(batch["target"])))}


def training_task(model: CallableTagger, samples: Sequence[dict],
                  dtype: torch.dtype = torch.float32, frame: str = "lab") -> TrainingTask:
    """The fine-tuning task of a torch tagger (``model.module(p4, mask) -> (J, 2)``
    logits, with ``score``) on labelled jet blocks, trained in ``dtype``; tracking uses
    a float64 copy. Augmentation rotates each jet about the beam (``frame`` "lab") or
    its own axis ("jet"); the labels are invariant."""
    module = getattr(model, "module", None)
    if not isinstance(module, torch.nn.Module) or not hasattr(module, "score"):
        raise SymplugError(f"fine-tuning needs a torch tagger (reference or a .pt checkpoint of "
                           f"symplug_jets.train_tagger), got {model!r}")
    p4, mask, target = _jets(samples)
    module = module.to(dtype)  # after the labels are checked: a refusal leaves the model
    items = list(zip(p4, mask, target))

    def predict(batch: dict) -> dict[str, torch.Tensor]:
        logits = module(batch["p4"].to(dtype), batch["mask"])
        return {"score": torch.softmax(logits, dim=-1)[:, 1], "logits": logits}

    def snapshot() -> CallableTagger:
        copied = copy.deepcopy(module).double().eval()
        tagger = CallableTagger(lambda p, m: copied.score(p.double(), m), "finetuned")
        tagger.module = copied
        return tagger

    def evaluate(blocks, diagnosis):
        v_p4, v_mask, v_target = _jets(blocks)
        was = module.training
        module.eval()
        out = tagging_metrics(module, v_p4.to(dtype), v_mask, v_target.numpy())
        module.train(was)
        summary = (diagnosis or {}).get("summary") or {}
        if summary.get("flip_rate") is not None:  # undefined for NaN scores
            out["flip_rate"] = summary["flip_rate"]
        return out

    return TrainingTask(
        module=module, items=items, collate=_collate, predict=predict,
        loss=_loss,
        outputs={"score": "0e"}, snapshot=snapshot, evaluate=evaluate,
        act=partial(rotate_each, frame=frame),
        layers=tuple(module.layer_names()) if hasattr(module, "layer_names") else ())
