"""The plugin manager: one cached instance that loads the ``symplug`` entry points.

Built-in adapters register through the same entry-point group as third-party
plugins. A plugin that fails to import, or implements an unknown ``symplug_``
hook, is recorded in :func:`plugin_errors` and left out; the others still load.
Set ``SYMPLUG_DISABLE_PLUGIN_AUTOLOAD=1`` to load no entry points (plugins can
then be registered by hand with ``get_plugin_manager().register(module)``).
"""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Sequence

import pluggy

from . import hookspecs
from .dataparallel import Partitions, partition
from .errors import PluginError, SymplugError
from .markers import PROJECT_NAME
from .records import Domain, ReportSection, TrainingTask

ENTRY_POINT_GROUP = "symplug"
DISABLE_AUTOLOAD_ENV = "SYMPLUG_DISABLE_PLUGIN_AUTOLOAD"


@dataclass(frozen=True)
class PluginInfo:
    """A loaded (or failed) plugin: entry-point name, distribution and version."""

    name: str
    distribution: str
    version: str
    error: str | None = None


class SymplugPluginManager(pluggy.PluginManager):
    """pluggy's manager plus per-plugin error isolation and a record of what loaded."""

    def __init__(self) -> None:
        super().__init__(PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}

    def register_checked(self, plugin: Any, name: str, distribution: str = "",
                         version: str = "") -> bool:
        """Register ``plugin``; on a contract violation unregister it and record why."""
        try:
            self.register(plugin, name=name)
            self.check_pending()
        except pluggy.PluginValidationError as exc:
            if self.is_registered(plugin):
                self.unregister(plugin)
            self.infos[name] = PluginInfo(name, distribution, version, f"breaks the contract: {exc}")
            return False
        self.infos[name] = PluginInfo(name, distribution, version)
        return True

    def load_entry_points(self) -> None:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist else ""
            version = ep.dist.version if ep.dist else ""
            if self.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not take the others down
                self.infos[ep.name] = PluginInfo(ep.name, dist, version,
                                                 f"failed to import {ep.value}: "
                                                 f"{type(exc).__name__}: {exc}")
                continue
            self.register_checked(plugin, ep.name, dist, version)

    def each_impl(self, hook: str, **kwargs) -> Iterator[tuple[str, Any]]:
        """Call ``hook`` implementation by implementation (pluggy's call order),
        yielding (plugin name, result); a failing plugin raises a PluginError naming it."""
        caller = getattr(self.hook, hook)
        for impl in reversed(caller.get_hookimpls()):
            args = {name: kwargs[name] for name in impl.argnames}
            try:
                yield impl.plugin_name, impl.function(**args)
            except SymplugError:
                raise
            except Exception as exc:
                raise PluginError(f"plugin {impl.plugin_name!r} failed in {hook}: "
                                  f"{type(exc).__name__}: {exc}") from exc


@lru_cache(maxsize=1)
def get_plugin_manager() -> SymplugPluginManager:
    """The process-wide plugin manager, with entry points loaded unless disabled."""
    pm = SymplugPluginManager()
    if not os.environ.get(DISABLE_AUTOLOAD_ENV):
        pm.load_entry_points()
    return pm


def plugin_infos() -> list[PluginInfo]:
    """Plugins seen so far, loaded or failed."""
    return list(get_plugin_manager().infos.values())


def plugin_errors() -> list[PluginInfo]:
    """Plugins that failed to import or broke the contract."""
    return [info for info in plugin_infos() if info.error]


def domains() -> dict[str, tuple[str, Domain]]:
    """All valid domains by name, with the plugin that declared each.

    A plugin whose hook fails or returns an invalid record is recorded as
    failed; the domains of the others are still returned.
    """
    pm = get_plugin_manager()
    found: dict[str, tuple[str, Domain]] = {}
    caller = pm.hook.symplug_domains
    for impl in reversed(caller.get_hookimpls()):
        try:
            records = impl.function()
            for record in records or []:
                if not isinstance(record, Domain):
                    raise PluginError(f"plugin {impl.plugin_name!r} returned "
                                      f"{type(record).__name__} from symplug_domains, not Domain")
                record.validate(impl.plugin_name)
                if record.name in found:
                    raise PluginError(f"plugin {impl.plugin_name!r} declares domain "
                                      f"{record.name!r}, already declared by {found[record.name][0]!r}")
                found[record.name] = (impl.plugin_name, record)
        except Exception as exc:
            info = pm.infos.get(impl.plugin_name, PluginInfo(impl.plugin_name, "", ""))
            pm.infos[impl.plugin_name] = PluginInfo(info.name, info.distribution, info.version,
                                                    f"symplug_domains: {exc}")
    return found


def get_domain(name: str) -> Domain:
    """The domain called ``name``, or a one-line error listing the known ones."""
    found = domains()
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        failed = "; ".join(f"{i.name}: {i.error}" for i in plugin_errors())
        raise SymplugError(f"unknown domain {name!r} (installed: {known})"
                           + (f"; failed plugins: {failed}" if failed else ""))
    return found[name][1]


def _first(hook: str, what: str, **kwargs) -> Any:
    for _plugin, result in get_plugin_manager().each_impl(hook, **kwargs):
        if result is not None:
            return result
    raise SymplugError(f"no plugin could load {what}")


def load_model(domain: str, spec: str) -> Any:
    """A model for ``domain`` from the first plugin that recognises ``spec``."""
    return _first("symplug_load_model", f"model {spec!r} for domain {domain!r}",
                  domain=domain, spec=spec)


def load_data(domain: str, path: str) -> list:
    """Samples of ``domain`` read from ``path`` by the first plugin that recognises it."""
    if not os.path.exists(path):
        raise SymplugError(f"data file {path!r} does not exist")
    data = _first("symplug_load_data", f"data file {path!r} for domain {domain!r}",
                  domain=domain, path=path)
    if len(data) == 0:
        raise SymplugError(f"data file {path!r} holds no samples")
    return list(data)


def load_partitions(domain: str, paths: Sequence[str], size: int | None = None) -> Partitions:
    """Partitions of about ``size`` units (the plugin's: ROOT entries, frames; None: its
    default) of the data in ``paths``: lazy ones from the plugin's
    ``symplug_load_partitions``, else the files read here and split into partitions of
    ``size`` samples (default 16)."""
    for path in paths:
        if not os.path.exists(path):
            raise SymplugError(f"data file {path!r} does not exist")
    if size is not None and int(size) < 1:
        raise SymplugError(f"partition size must be >= 1, got {size}")
    for _plugin, parts in get_plugin_manager().each_impl("symplug_load_partitions", domain=domain,
                                                          paths=list(paths), size=size):
        if parts is not None:
            return Partitions(parts)
    return partition([s for path in paths for s in load_data(domain, path)], size=size or 16)


def augment_batch(domain: str, batch: Any, matrices: Any) -> Any:
    """A training batch transformed by group elements, by the domain's plugin."""
    return _first("symplug_augment_batch", f"an augmentation for domain {domain!r}",
                  domain=domain, batch=batch, matrices=matrices)


def training_task(domain: str, model: Any, samples: list) -> TrainingTask:
    """The fine-tuning task of ``model`` on ``samples`` from ``domain``'s plugin, checked."""
    get_domain(domain)
    for plugin, task in get_plugin_manager().each_impl("symplug_training_task", domain=domain,
                                                       model=model, samples=samples):
        if task is not None:
            if not isinstance(task, TrainingTask):
                raise PluginError(f"plugin {plugin!r} returned {type(task).__name__} from "
                                  "symplug_training_task, not TrainingTask")
            return task.validate(plugin)
    raise SymplugError(f"no plugin offers fine-tuning for domain {domain!r}")


def run_md(domain: str, options: dict) -> dict:
    """The MD stability comparison of ``domain``, by its plugin."""
    get_domain(domain)
    return _first("symplug_md", f"an MD stability test for domain {domain!r}",
                  domain=domain, options=options)


def report_sections(result: dict) -> list[ReportSection]:
    """Report sections from every plugin, in call order."""
    sections: list[ReportSection] = []
    for _plugin, found in get_plugin_manager().each_impl("symplug_report_sections", result=result):
        sections.extend(found or [])
    return sections


def demo_results(out: Path, quick: bool, seed: int, progress: bool) -> dict[str, dict]:
    """``symplug demo``: every plugin's demo results, by name, plugins in alphabetical order."""
    by_plugin = dict(get_plugin_manager().each_impl("symplug_demo", out=out, quick=quick,
                                                    seed=seed, progress=progress))
    results: dict[str, dict] = {}
    for plugin in sorted(by_plugin):
        for name, result in (by_plugin[plugin] or {}).items():
            if name in results:
                raise PluginError(f"plugin {plugin!r} returns demo result {name!r} twice")
            results[name] = result
    return results
