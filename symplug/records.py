"""Small typed records that plugins return from their hooks.

The mathematics and design: docs/design.md, section 2.3.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .errors import PluginError, SymplugError

if TYPE_CHECKING:  # the records are imported by every plugin at start-up: torch is not
    import torch

    from .groups import Group


@dataclass(frozen=True)
class Lazy:
    """A callable named ``"module:attribute"``, imported on its first call, with keyword
    arguments bound (``bound``, as (name, value) pairs). A plugin's domain record names
    its functions so, and listing plugins (``symplug plugins``) imports none of their
    modules (nor torch). Pickled by name, so records travel to dask workers."""

    target: str
    bound: tuple[tuple[str, Any], ...] = ()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        import pkgutil

        return pkgutil.resolve_name(self.target)(*args, **dict(self.bound), **kwargs)


def lazy(target: str, **bound: Any) -> Lazy:
    """:class:`Lazy` ``target`` (``"module:attribute"``) with ``bound`` keyword arguments."""
    if ":" not in target:
        raise SymplugError(f"lazy target {target!r} must be 'module:attribute'")
    return Lazy(target, tuple(bound.items()))


@dataclass(frozen=True)
class Output:
    """A model output: its representation (e.g. ``"1o"``) and unit (e.g. ``"eV/A"``);
    ``declared``: added by the user (:meth:`Domain.declare`), diagnosed by default."""

    rep: str
    units: str = ""
    description: str = ""
    declared: bool = False


@dataclass(frozen=True)
class Domain:
    """A domain of inputs that group elements act on.

    * ``act(sample, matrices)`` returns one batch holding the copies g_q x of
      ``sample`` for the (B, 3, 3) float64 ``matrices``, tokens in the same order
      in every copy. It batches as well as transforms.
    * ``outputs`` declares the model outputs with representations and units.
    * ``split_layer(name, tensor, B)`` turns a captured activation into (B, ...)
      when its leading axis is not copy-major (default: reshape(B, -1)).
    * ``reference(sample)`` returns exact labels {output: tensor} if the sample
      carries them (for the bias-variance split), else None.
    * ``groups``: the groups that make sense for the domain, default first.
    * ``select_outputs(samples)`` names the outputs to diagnose when none are asked for
      (e.g. stress when some structure is periodic); default: all.
    * ``excluded_outputs(sample)`` names the outputs that do not exist for this sample
      (e.g. the stress of a non-periodic structure): an output's A and B are then taken
      over the samples it exists for (its own ``n_samples``).
    * ``summary``: :class:`SummaryStage` passes whose last result is added to the result
      under ``"summary"`` (e.g. AUC, flip rate and skipped jets for taggers).
    * ``samples_are_blocks``: a sample is a block of items (jets); data-set errors then
      average over items, not blocks.
    * ``check(sample)`` raises a :class:`SymplugError` naming the problem for an unusable
      sample (e.g. NaN positions); it runs once per sample before its orbit, so that with
      ``skip_failures`` the sample is flagged and counted like a failed evaluation.
    * ``keep_outputs``: outputs whose values over the grid the orbit pass keeps for the
      summary, whose stages then get ``orbit_values=[{output: (grid size, ...)}]``, one
      dict per sample, so that they need no second pass over the orbit (e.g. the flip
      rate of a tagger). The values stay where the samples were evaluated.
    * ``count_items(sample)``: how many of the user's items a sample holds (e.g. the jets
      of a block), an int >= 0; default one item per sample. It runs where the sample is
      evaluated; the result's ``n_items`` sums it over the kept samples.
    * ``item_name``: the plural noun the text uses for the items (``"jets"``,
      ``"structures"``); default ``"samples"``.
    * ``symmetries``: the groups the data are symmetric under, which a model should learn
      (default: every group of ``groups``); the others probe how much a model depends on
      orientation, as it should (e.g. SO3 for jets, whose beam axis breaks it), and the
      report gives them no "learned" verdict.

    What the domain loads and trains (each optional; the core names what is missing):

    * ``load_model(spec, trusted) -> model``: a model named by ``spec`` (a path,
      ``module:attr`` or a name), a callable ``batch -> {output: tensor (copies, ...)}``.
      ``trusted`` is True when the user vouched for it (``--trust-model``): a spec that
      runs code when loaded (a pickle read with ``torch.load(weights_only=False)``, a
      ``module:attr`` import) must raise a :class:`SymplugError` unless it is.
    * ``load_data(path) -> list``: the samples in a file.
    * ``load_partitions(paths, size) -> list``: the samples as lazy partitions of about
      ``size`` units (the domain's: entries of a ROOT file, frames; None: its default),
      ``dask.delayed`` objects that each produce a list of samples, or None when the
      files are not ones it streams (the core then reads them with ``load_data``).
    * ``training_task(model, samples) -> TrainingTask``: the domain part of augmented
      fine-tuning (:class:`TrainingTask`).
    * ``report_sections(result) -> list[ReportSection]``: sections for the report of a
      result of this domain.
    """

    name: str
    act: Callable[[Any, torch.Tensor], Any]
    outputs: Mapping[str, Output]
    groups: tuple[str, ...] = ("O3", "SO3")
    description: str = ""
    split_layer: Callable[[str, torch.Tensor, int], torch.Tensor] | None = None
    reference: Callable[[Any], Mapping[str, torch.Tensor] | None] | None = None
    axis: tuple[float, float, float] = (0.0, 0.0, 1.0)
    select_outputs: Callable[[Any], list[str]] | None = None
    summary: tuple["SummaryStage", ...] = ()
    samples_are_blocks: bool = False
    keep_outputs: tuple[str, ...] = ()
    check: Callable[[Any], None] | None = None
    excluded_outputs: Callable[[Any], Any] | None = None
    count_items: Callable[[Any], int] | None = None
    item_name: str = "samples"
    symmetries: tuple[str, ...] | None = None
    load_model: Callable[[str, bool], Any] | None = None
    load_data: Callable[[str], list] | None = None
    load_partitions: Callable[[list, int | None], list | None] | None = None
    training_task: Callable[[Any, list], "TrainingTask"] | None = None
    report_sections: Callable[[dict], list["ReportSection"]] | None = None

    def declare(self, outputs: Mapping[str, str]) -> "Domain":
        """This domain with further outputs ``{name: representation}``, e.g.
        ``{"dipole": "1o", "polarizability": "cartesian2", "mtt::target": "2,+1"}``, in
        the units the model returns them; a declared built-in name keeps its units."""
        from .representations import representation

        extra = {}
        for name, rep in outputs.items():
            try:
                representation(rep)
            except SymplugError as exc:
                raise SymplugError(f"declared output {name!r}: {exc}") from exc
            known = self.outputs.get(name)  # a built-in output keeps its units
            extra[name] = Output(rep, known.units if known else "model units",
                                 "declared by the user", declared=True)
        return dataclasses.replace(self, outputs={**self.outputs, **extra})

    def group(self, spec: "str | Group | None" = None) -> "Group":
        """The group ``spec`` (a name or a :class:`~symplug.Group`; None: the domain's first)
        about the domain's ``axis``; an error when the domain does not offer it."""
        from .groups import Group

        group = Group.parse(self.groups[0] if spec is None else spec, self.axis)
        if group.name not in self.groups:
            raise SymplugError(f"group {group.name} is not offered by domain {self.name!r} "
                               f"(offers {', '.join(self.groups)})")
        return group

    def is_symmetry(self, group: "str | Group") -> bool:
        """Whether ``group`` is a symmetry of the domain's data (``symmetries``)."""
        from .groups import Group

        name = Group.parse(group, self.axis).name
        return name in (self.groups if self.symmetries is None else self.symmetries)

    def validate(self, plugin: str) -> "Domain":
        """Raise :class:`PluginError` naming ``plugin`` if the record breaks the contract."""
        from .groups import Group
        from .representations import representation

        problems = []
        if not isinstance(self.name, str) or not self.name.isidentifier():
            problems.append(f"name {self.name!r} is not an identifier")
        if not callable(self.act):
            problems.append("act is not callable")
        if not isinstance(self.outputs, Mapping) or not self.outputs:
            problems.append("outputs must be a non-empty mapping of names to Output")
        else:
            for out_name, out in self.outputs.items():
                if not isinstance(out, Output):
                    problems.append(f"output {out_name!r} is not an Output record")
                    continue
                try:
                    representation(out.rep)
                except SymplugError as exc:
                    problems.append(f"output {out_name!r}: {exc}")
        try:
            for g in self.groups:
                Group.parse(g, self.axis)
        except SymplugError as exc:
            problems.append(str(exc))
        if self.symmetries is not None and (not isinstance(self.symmetries, tuple)
                                            or not set(self.symmetries) <= set(self.groups)):
            problems.append(f"symmetries {self.symmetries!r} must be a tuple of its groups")
        if not isinstance(self.summary, tuple) or not all(
                isinstance(stage, SummaryStage) for stage in self.summary):
            problems.append("summary must be a tuple of SummaryStage records")
        for name in ("check", "count_items", "reference", "select_outputs", "excluded_outputs",
                     "split_layer", *BEHAVIOUR):
            if getattr(self, name) is not None and not callable(getattr(self, name)):
                problems.append(f"{name} is not callable")
        if not isinstance(self.item_name, str) or not self.item_name.strip() \
                or self.item_name != " ".join(self.item_name.split()):
            problems.append(f"item_name {self.item_name!r} is not a plural noun such as 'jets'")
        if problems:
            raise PluginError(f"plugin {plugin!r} declares an invalid domain "
                              f"{getattr(self, 'name', '?')!r}: " + "; ".join(problems))
        return self


BEHAVIOUR = ("load_model", "load_data", "load_partitions", "training_task", "report_sections")


@dataclass(frozen=True)
class SummaryStage:
    """One map-reduce pass of a domain summary, so that it merges exactly over
    partitions of the data (one partition when run in one process).

    * ``map(samples, model, grid, orbit_values, context, previous) -> part`` runs where
      a partition's samples were evaluated (``orbit_values`` as for ``keep_outputs``,
      or None: then evaluate the orbit again); ``context`` is the previous stage's
      result and ``previous`` this partition's part of the previous stage (both None
      for the first stage). Parts travel to the client: keep them small.
    * ``reduce(parts, context) -> result`` merges the parts of all partitions, in data
      order. The last stage's result is the summary (a JSON-ready dict).

    Example: AUC needs every score, the flip rate at the median score needs the median
    first: stage 1 maps to the scores and reduces to AUC and threshold; stage 2 maps
    to weighted flip counts at that threshold and reduces by summing them.
    """

    map: Callable[..., Any]
    reduce: Callable[[list, Any], Any]


@dataclass(frozen=True)
class ReportSection:
    """A section a plugin contributes to the report: a title and Markdown text."""

    title: str
    markdown: str
    figures: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG bytes


@dataclass(frozen=True)
class MeanTerm:
    """``weight * total / count``: a loss term averaging ``count`` rows (e.g. a sum of
    squares over ``count`` components). Data-parallel ranks divide their ``total`` by
    the global count (summed over ranks), so that the summed gradients equal the
    one-process gradient whatever the number of rows on each rank."""

    total: torch.Tensor
    count: float
    weight: float = 1.0

    @property
    def value(self) -> torch.Tensor:
        """``weight * total / count`` (one process: the term's mean)."""
        return self.weight * self.total / self.count


@dataclass(frozen=True)
class TrainingTask:
    """The domain part of augmented fine-tuning, returned by ``Domain.training_task``.

    The core loop (:func:`symplug.training.finetune`) batches ``items``, transforms each
    batch by Haar-random group elements (inputs by ``act``, labels by their
    representations in ``outputs``), and minimises ``loss`` plus the optional symmetry
    penalties on ``outputs``.

    * ``module``: the torch module whose parameters are trained.
    * ``items``: the training examples (e.g. labelled structures, single jets).
    * ``collate(items) -> batch``: one batch, the object ``act`` transforms.
    * ``act(batch, matrices) -> batch``: the inputs of each batch item acted on by its own
      element (``matrices`` (B, 3, 3) float64), labels left as they are: the domain's
      action on training batches. None: the task cannot be augmented.
    * ``labels(batch) -> {name: tensor}`` and ``with_labels(batch, labels) -> batch``: the
      batch's labels that are not invariant, named as in ``outputs`` and laid out as the
      predictions (rows as ``rows`` says); the core transforms them by their
      representations. None: every label is invariant.
    * ``predict(batch) -> {name: tensor}``: differentiable predictions in training units;
      the leading axis holds one row per batch item, or per token (see ``rows``).
    * ``loss(batch, predictions)``: the supervised loss, either a ``{name: MeanTerm}``
      (exact under data-parallel training, whatever the rows per rank) or a scalar
      tensor (used as is; data-parallel ranks average it, which is the one-process
      loss only when every rank holds as many rows).
    * ``outputs``: {name: representation} of the predictions the penalties compare.
    * ``output_weights``: {name: weight} of each output's penalty term (default 1).
    * ``rows(batch, name) -> LongTensor | None``: the batch item of every row of a
      ragged output (e.g. per-atom forces); None when rows are batch items.
    * ``snapshot() -> model``: the symplug model (for :func:`symplug.diagnose`) with the
      current weights, e.g. a float64 copy in eval mode.
    * ``evaluate(samples, diagnosis) -> {figure: float}``: accuracy figures on domain
      samples (e.g. MAE in meV/atom, AUC), given the tracking diagnosis (or None).
    * ``layers``: the named layers tracked by default.
    """

    module: torch.nn.Module
    items: Any
    collate: Callable[[Any], Any]
    predict: Callable[[Any], Mapping[str, torch.Tensor]]
    loss: Callable[[Any, Mapping[str, torch.Tensor]], torch.Tensor]
    outputs: Mapping[str, str]
    snapshot: Callable[[], Any]
    evaluate: Callable[[Any, dict | None], dict] | None = None
    output_weights: Mapping[str, float] = field(default_factory=dict)
    rows: Callable[[Any, str], torch.Tensor | None] | None = None
    layers: tuple[str, ...] = ()
    act: Callable[[Any, torch.Tensor], Any] | None = None
    labels: Callable[[Any], Mapping[str, torch.Tensor]] | None = None
    with_labels: Callable[[Any, Mapping[str, torch.Tensor]], Any] | None = None

    def validate(self, plugin: str) -> "TrainingTask":
        """Raise :class:`PluginError` naming ``plugin`` if the record breaks the contract."""
        import torch

        from .representations import representation

        problems = []
        if not isinstance(self.module, torch.nn.Module):
            problems.append(f"module is {type(self.module).__name__}, not a torch.nn.Module")
        for name in ("collate", "predict", "loss", "snapshot"):
            if not callable(getattr(self, name)):
                problems.append(f"{name} is not callable")
        for name in ("act", "labels", "with_labels", "evaluate", "rows"):
            if getattr(self, name) is not None and not callable(getattr(self, name)):
                problems.append(f"{name} is not callable")
        if (self.labels is None) != (self.with_labels is None):
            problems.append("labels and with_labels come together")
        for out_name, rep in dict(self.outputs).items():
            try:
                representation(rep)
            except SymplugError as exc:
                problems.append(f"output {out_name!r}: {exc}")
        if problems:
            raise PluginError(f"plugin {plugin!r} returned an invalid TrainingTask: "
                              + "; ".join(problems))
        return self
