"""The hooks a symplug plugin may implement (all keyword-only, prefixed ``symplug_``).

A plugin is a module (or object) registered under the ``symplug`` entry-point
group; it implements any subset of these hooks with :data:`symplug.hookimpl`.
"""

from __future__ import annotations

from typing import Any

from .markers import hookspec
from .records import Domain, ReportSection, TrainingTask


@hookspec
def symplug_domains() -> list[Domain]:
    """Declare the domains this plugin provides.

    Example::

        @hookimpl
        def symplug_domains():
            return [Domain(name="planar", act=rotate_points, groups=("O2", "SO2"),
                           outputs={"energy": Output("0e", "a.u.")})]
    """


@hookspec(firstresult=True)
def symplug_load_model(domain: str, spec: str, trusted: bool) -> Any:
    """Load a model of ``domain`` named by ``spec`` (a path, ``module:attr`` or a name).

    Return a callable ``batch -> {output: tensor (copies, ...)}`` (a torch module,
    or a wrapper whose ``.module`` holds the layers), or None if ``spec`` is not
    this plugin's. ``trusted`` is True when the user vouched for the model
    (``--trust-model``): a spec that can run code when loaded (a pickle read with
    ``torch.load(weights_only=False)``, a ``module:attr`` import) must be refused with
    a :class:`symplug.SymplugError` unless it is; load tensors with ``weights_only=True``.

    Example::

        @hookimpl
        def symplug_load_model(domain, spec, trusted):
            if domain == "planar" and spec == "mlp":
                return PlanarMLP()
    """


@hookspec(firstresult=True)
def symplug_load_data(domain: str, path: str) -> list | None:
    """Read the samples of ``domain`` from ``path``; None if the file is not this plugin's.

    Example::

        @hookimpl
        def symplug_load_data(domain, path):
            if domain == "planar":
                return list(torch.from_numpy(numpy.load(path)["points"]))
    """


@hookspec(firstresult=True)
def symplug_load_partitions(domain: str, paths: list[str], size: int | None) -> list | None:
    """The samples of ``domain`` in ``paths`` as partitions of about ``size`` units
    (the plugin's: entries of a ROOT file, frames; None: the plugin's default), for a
    data-parallel diagnosis: a list of ``dask.delayed`` objects that each produce a
    list of samples, read where they are computed. None if the files are not this
    plugin's; without a plugin that answers, ``symplug_load_data`` reads the files here
    and the samples are split.

    Example::

        @hookimpl
        def symplug_load_partitions(domain, paths, size):
            if domain == "planar":  # one partition per file
                return [dask.delayed(read_points)(path) for path in paths]
    """


@hookspec(firstresult=True)
def symplug_augment_batch(domain: str, batch: Any, matrices: Any) -> Any:
    """Transform a training ``batch`` (inputs and targets) by group elements.

    ``matrices`` is (B, 3, 3) float64, one element per sample in the batch;
    inputs transform by the domain's action and targets by their declared
    representations. Return the new batch, or None if the domain is not this
    plugin's.

    Example::

        @hookimpl
        def symplug_augment_batch(domain, batch, matrices):
            if domain == "planar":
                points, energy = batch
                return points @ matrices.transpose(1, 2).to(points), energy
    """


@hookspec(firstresult=True)
def symplug_training_task(domain: str, model: Any, samples: list) -> TrainingTask | None:
    """The domain part of augmented fine-tuning of ``model`` on ``samples`` (what
    ``symplug_load_model`` and ``symplug_load_data`` returned), or None if the domain
    is not this plugin's. The core loop (``symplug finetune``) does the rest:
    batching order, Haar augmentation through ``symplug_augment_batch``, penalties,
    checkpoints, symmetry tracking.

    Example::

        @hookimpl
        def symplug_training_task(domain, model, samples):
            if domain != "planar":
                return None
            return TrainingTask(
                module=model, items=samples, collate=collate_points,
                predict=lambda batch: model(batch["points"]),
                loss=lambda batch, pred: ((pred["energy"] - batch["energy"]) ** 2).mean(),
                outputs={"energy": "0e"}, snapshot=lambda: copy.deepcopy(model).eval())
    """


@hookspec(firstresult=True)
def symplug_md(domain: str, options: dict) -> dict | None:
    """Run ``domain``'s MD stability comparison (raw against symmetrised models).

    ``options`` holds the ``symplug md`` arguments (``model``, ``structure``,
    ``steps``, ``timestep_fs``, ``temperature_K``, ``degree``, ``variants``,
    ``interval``, ``reference``, ``seed``, ``out``, ``progress``). Return a result
    dictionary with a ``"table"`` {variant: {figure: value}}, or None if the
    domain is not this plugin's.

    Example::

        @hookimpl
        def symplug_md(domain, options):
            if domain == "atoms":
                return compare_runs(**options)
    """


@hookspec
def symplug_cli(subparsers: Any) -> None:
    """Add domain commands to the ``symplug`` command line (argparse subparsers).

    A command sets ``func`` (``args -> exit code``) with ``set_defaults``; user
    mistakes raise :class:`symplug.SymplugError`.

    Example::

        @hookimpl
        def symplug_cli(subparsers):
            p = subparsers.add_parser("planar", help="planar tools")
            p.set_defaults(func=lambda args: 0)
    """


@hookspec
def symplug_report_sections(result: dict) -> list[ReportSection]:
    """Contribute report sections for a result (the README "Result format" JSON dictionary).

    Example::

        @hookimpl
        def symplug_report_sections(result):
            if result["domain"] == "planar":
                return [ReportSection("Planar summary", "All points lie in z = 0.")]
            return []
    """


@hookspec
def symplug_demo(out: Any, quick: bool, seed: int, progress: bool) -> dict | None:
    """Run this plugin's part of ``symplug demo`` on its shipped model and data.

    ``out`` is the demo's folder (a :class:`pathlib.Path`; write extra files, such
    as prediction files, under ``out / <plugin>``); ``quick`` asks for the
    one-minute version. Return ``{name: result}`` for the report (names are file
    stems), or None to take no part.

    Example::

        @hookimpl
        def symplug_demo(out, quick, seed, progress):
            model, samples = PlanarMLP(), shipped_points()[: 4 if quick else 32]
            return {"planar": symplug.diagnose(model, samples, planar_domain(), seed=seed)}
    """
