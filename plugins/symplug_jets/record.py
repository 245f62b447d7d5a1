"""The ``jets`` and ``jets_axis`` domain records: what the engine needs of them, named
lazily.

Every function of a record is a :func:`symplug.lazy` reference, imported on first use,
so that listing plugins imports neither uproot nor torch.
"""

from __future__ import annotations

from symplug import Domain, Output, SummaryStage, SymplugError, lazy


def jets_domain(frame: str = "lab", units: str = "probability") -> Domain:
    """``jets`` (lab frame; SO2/O2 about the beam) or ``jets_axis`` (about each jet's axis).
    ``units``: those of the tagger's score; the shipped ``reference`` and ``mass`` taggers
    and :class:`~symplug_jets.weaver.WeaverTagger` give a signal probability (softmax or
    sigmoid), ``pz2`` GeV^2; a tagger that returns raw logits says ``"logit"``.

    The summary: performance on the untransformed jets (AUC, 1/eps_B, the ROC), then the
    flip rate (weighted fraction of copies on the other side of the eps_S = 0.5 working
    point, or of the median score without labels) under the grid and the weighted
    distribution of the score shift s(g x) - s(x), read from the orbit pass's kept
    scores; both merge exactly over partitions."""
    if frame not in ("lab", "jet"):
        raise SymplugError(f"frame must be 'lab' or 'jet', got {frame!r}")
    here = "symplug_jets.domain"
    return Domain(
        name="jets" if frame == "lab" else "jets_axis",
        act=lazy("symplug_jets.action:rotate_jets", frame=frame),
        groups=("SO2", "O2", "SO3", "O3"),
        symmetries=("SO2", "O2"),  # the beam axis breaks SO3: rotating off it probes
        outputs={"score": Output("0e", units, "the tagger's signal score")},
        description=("jet constituents (E, px, py, pz); rotations in the "
                     + ("lab frame, axis = beam" if frame == "lab" else "jet frame")),
        summary=(SummaryStage(lazy(f"{here}:scores_part", signal=None, frame=frame),
                              lazy(f"{here}:performance")),
                 SummaryStage(lazy(f"{here}:flips_part", signal=None, frame=frame),
                              lazy(f"{here}:flip_rate"))),
        samples_are_blocks=True, keep_outputs=("score",),
        count_items=lazy(f"{here}:block_jets"), item_name="jets",
        load_model=lazy("symplug_jets.taggers:load_tagger"),
        load_data=lazy(f"{here}:load_blocks"),
        load_partitions=lazy(f"{here}:root_partitions"),
        training_task=lazy("symplug_jets.finetune:training_task", frame=frame),
        report_sections=lazy("symplug_jets.report:report_sections", frame=frame))
