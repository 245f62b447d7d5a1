"""The plugin manager: one cached instance that loads the ``symplug`` entry points.

Built-in adapters register through the same entry-point group as third-party
plugins. A plugin that fails to import (any exception, ``sys.exit`` included; not
Ctrl-C), implements an unknown ``symplug_`` hook, fails in or returns the wrong type
from a hook that every plugin answers (domains, CLI commands, report sections, demo),
or adds a CLI command that exists, is recorded in :func:`plugin_errors` and left out
of that hook (the CLI warns on stderr, one line per plugin); the others still load.
A domain failing in a requested computation (e.g. its ``load_model``) is a one-line
:class:`PluginError` naming the plugin that declared it.
Set ``SYMPLUG_DISABLE_PLUGIN_AUTOLOAD=1`` to load no entry points (plugins can
then be registered by hand with ``get_plugin_manager().register(module)``).

The mathematics and design: docs/design.md, section 2.3.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
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

# hooks of symplug 0.1 and what replaces each: a plugin still implementing one is told
REMOVED_HOOKS = {
    "symplug_load_model": "pass load_model=(spec, trusted) -> model to its Domain",
    "symplug_load_data": "pass load_data=(path) -> samples to its Domain",
    "symplug_load_partitions": "pass load_partitions=(paths, size) -> partitions to its Domain",
    "symplug_training_task": "pass training_task=(model, samples) -> TrainingTask to its Domain",
    "symplug_augment_batch": "give its TrainingTask act=(batch, matrices) -> batch (inputs "
                             "only; labels turn by the representations of its outputs, "
                             "through labels= and with_labels=)",
    "symplug_md": "add the command through symplug_cli",
}
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
        self.warn = False  # the CLI sets it: each failure is then one line on stderr
        self.warned: set[str] = set()

    def fail(self, name: str, reason: str) -> None:
        """Record plugin ``name`` as failed because of ``reason`` (and warn, once)."""
        reason = " ".join(reason.split())  # one line
        info = self.infos.get(name, PluginInfo(name, "", ""))
        if info.error is None:
            self.infos[name] = PluginInfo(info.name, info.distribution, info.version, reason)
        if self.warn and name not in self.warned:
            self.warned.add(name)
            print(f"symplug: warning: plugin {name!r} left out: {reason}", file=sys.stderr)

    def warn_failed(self) -> None:
        """Warn (once each) about the plugins recorded as failed so far."""
        self.warn = True
        for info in list(self.infos.values()):
            if info.error:
                self.fail(info.name, info.error)

    def register_checked(self, plugin: Any, name: str, distribution: str = "",
                         version: str = "") -> bool:
        """Register ``plugin``; on a contract violation unregister it and record why."""
        try:
            old = [hook for hook in REMOVED_HOOKS if callable(getattr(plugin, hook, None))]
            if old:
                raise PluginError(
                    f"implements {old[0]}, a hook of symplug 0.1 that the domain record now "
                    f"replaces: {REMOVED_HOOKS[old[0]]} (README, 'Write a third-party plugin')")
            self.register(plugin, name=name)
            self.check_pending()
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            if self.get_plugin(name) is not None:
                self.unregister(name=name)
            reason = (" ".join(str(exc).split())
                      if isinstance(exc, (pluggy.PluginValidationError, PluginError))
                      else describe(exc))
            self.infos[name] = PluginInfo(name, distribution, version,
                                          f"breaks the contract: {reason}")
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
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # sys.exit too: a broken plugin must not take the others down
                self.infos[ep.name] = PluginInfo(ep.name, dist, version,
                                                 f"failed to import {ep.value}: {describe(exc)}")
                continue
            self.register_checked(plugin, ep.name, dist, version)

    def impls(self, hook: str) -> list:
        """``hook``'s implementations in pluggy's call order."""
        return list(reversed(getattr(self.hook, hook).get_hookimpls()))

    def call_each(self, hook: str, check=None, **kwargs) -> Iterator[tuple[str, Any]]:
        """Call ``hook`` of every plugin, yielding (plugin name, result); a plugin that
        fails, or whose result ``check(result)`` rejects (returns a reason), is recorded
        and left out. For hooks every plugin answers (report sections, demo)."""
        for impl in self.impls(hook):
            args = {name: kwargs[name] for name in impl.argnames if name in kwargs}
            try:
                result = impl.function(**args)
                problem = check(result) if check else None
            except SymplugError:
                raise
            except KeyboardInterrupt:
                raise
            except BaseException as exc:
                self.fail(impl.plugin_name, f"failed in {hook}: {describe(exc)}")
                continue
            if problem:
                self.fail(impl.plugin_name, f"{hook} returned {problem}")
                continue
            yield impl.plugin_name, result


def describe(exc: BaseException) -> str:
    """One line for an exception a plugin raised (``sys.exit`` included)."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


TRUST_HINT = "pass --trust-model (trusted=True in Python) if you trust it"


def refuse_untrusted(spec: str, why: str) -> None:
    """The one-line refusal of a model that runs code when loaded, ``why`` saying how."""
    raise SymplugError(f"model {spec!r}: refused, {why}; {TRUST_HINT}")


def import_spec(spec: str, what: str, trusted: bool) -> Any:
    """The attribute named by a ``module:attribute`` model spec. Importing runs the
    module's code: refused unless ``trusted`` (``--trust-model``); any failure of the
    import (``sys.exit`` included, not Ctrl-C) is a one-line error naming the spec."""
    import importlib

    module_name, _, attr = spec.partition(":")
    if not trusted:
        refuse_untrusted(spec, f"it imports Python module {module_name!r}, which runs its code")
    if not module_name or not attr:
        raise SymplugError(f"cannot load {what} {spec!r}: expected module:attribute")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        raise SymplugError(f"cannot load {what} {spec!r}: {describe(exc)}") from exc


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
    builtin = {name for name, info in pm.infos.items() if info.distribution == PROJECT_NAME}
    impls = sorted(pm.impls("symplug_domains"), key=lambda i: i.plugin_name not in builtin)
    for impl in impls:  # built-in plugins first: a third-party duplicate is the one left out
        try:
            records = impl.function()
            mine: dict[str, tuple[str, Domain]] = {}
            for record in records or []:
                if not isinstance(record, Domain):
                    raise PluginError(f"returned {type(record).__name__} from "
                                      "symplug_domains, not Domain")
                record.validate(impl.plugin_name)
                if record.name in found or record.name in mine:
                    owner = found.get(record.name, mine.get(record.name))[0]
                    raise PluginError(f"declares domain {record.name!r}, already declared "
                                      f"by {owner!r}")
                mine[record.name] = (impl.plugin_name, record)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            reason = str(exc) if isinstance(exc, PluginError) else describe(exc)
            pm.fail(impl.plugin_name, f"symplug_domains: {reason}")
            continue
        found.update(mine)
    return found


def add_cli_commands(subparsers: Any) -> None:
    """Each plugin's ``symplug_cli`` commands; a plugin that fails, or adds a command
    that exists, is recorded and its commands are left out (the parser as before it)."""
    pm = get_plugin_manager()
    for impl in pm.impls("symplug_cli"):
        choices, actions = dict(subparsers.choices), list(subparsers._choices_actions)
        try:
            impl.function(subparsers=subparsers)
            replaced = [n for n, parser in choices.items() if subparsers.choices.get(n) is not parser]
            if replaced:
                raise PluginError(f"adds command {replaced[0]!r}, which already exists")
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            subparsers.choices.clear()
            subparsers.choices.update(choices)
            subparsers._choices_actions[:] = actions
            reason = str(exc) if isinstance(exc, PluginError) else describe(exc)
            if "conflicting subparser:" in reason:
                reason = f"adds command {reason.rsplit(':', 1)[1].strip()!r}, which already exists"
            pm.fail(impl.plugin_name, f"symplug_cli: {reason}")


def owned_domain(name: str) -> tuple[str, Domain]:
    """(declaring plugin, domain) for ``name``, or a one-line error listing the known ones."""
    found = domains()
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        failed = "; ".join(f"{i.name}: {i.error}" for i in plugin_errors())
        raise SymplugError(f"unknown domain {name!r} (installed: {known})"
                           + (f"; failed plugins: {failed}" if failed else ""))
    return found[name]


def get_domain(name: str) -> Domain:
    """The domain called ``name``, or a one-line error listing the known ones."""
    return owned_domain(name)[1]


def call_domain(owner: tuple[str, Domain], behaviour: str, check, *args: Any) -> Any:
    """The ``behaviour`` (e.g. ``load_model``) of a domain, ``owner`` = (declaring plugin,
    domain) as :func:`owned_domain` gives it, called with ``args``. A user's mistake
    (:class:`SymplugError`) passes unchanged; any other failure, or a result
    ``check(result)`` rejects (returns a reason), is a :class:`PluginError` naming the
    plugin."""
    plugin, domain = owner
    name = domain.name
    function = getattr(domain, behaviour)
    if function is None:
        raise SymplugError(f"domain {name!r} (plugin {plugin!r}) offers no {behaviour}")
    try:
        result = function(*args)
    except (SymplugError, KeyboardInterrupt):
        raise
    except BaseException as exc:  # sys.exit too: one line naming the plugin
        raise PluginError(f"plugin {plugin!r} failed in {behaviour} of domain {name!r}: "
                          f"{describe(exc)}") from exc
    problem = check(result) if check else None
    if problem:
        raise PluginError(f"plugin {plugin!r} returned {problem} from {behaviour} of domain "
                          f"{name!r}")
    return result


def _not_callable(model: Any) -> str | None:
    return None if callable(model) else f"{type(model).__name__}, not a callable model,"


def _not_list(data: Any) -> str | None:
    return None if isinstance(data, (list, tuple)) else f"{type(data).__name__}, not a list of samples,"


def _not_parts(parts: Any) -> str | None:
    return None if parts is None or isinstance(parts, (list, tuple)) else \
        f"{type(parts).__name__}, not a list of partitions (or None),"


def _not_task(task: Any) -> str | None:
    return None if isinstance(task, TrainingTask) else f"{type(task).__name__}, not TrainingTask,"


def load_model(domain: str, spec: str, trusted: bool = False) -> Any:
    """A model of ``domain`` named by ``spec``, loaded by the domain.

    ``trusted``: the user trusts ``spec`` to run code (``--trust-model``): only then may
    the domain unpickle arbitrary objects (e.g. a metatrain ``.ckpt``) or import a
    ``module:attribute``; without it such specs are refused."""
    return call_domain(owned_domain(domain), "load_model", _not_callable, spec, bool(trusted))


def load_data(domain: str, path: str) -> list:
    """Samples of ``domain`` read from ``path`` by the domain."""
    if not os.path.exists(path):
        raise SymplugError(f"data file {path!r} does not exist")
    data = call_domain(owned_domain(domain), "load_data", _not_list, path)
    if len(data) == 0:
        raise SymplugError(f"data file {path!r} holds no samples")
    return list(data)


def load_partitions(domain: str, paths: Sequence[str], size: int | None = None) -> Partitions:
    """Partitions of about ``size`` units (the domain's: ROOT entries, frames; None: its
    default) of the data in ``paths``: lazy ones from the domain's ``load_partitions``,
    else the files read here and split into partitions of ``size`` samples (default 16)."""
    for path in paths:
        if not os.path.exists(path):
            raise SymplugError(f"data file {path!r} does not exist")
    if size is not None and int(size) < 1:
        raise SymplugError(f"partition size must be >= 1, got {size}")
    owner = owned_domain(domain)
    if owner[1].load_partitions is not None:
        parts = call_domain(owner, "load_partitions", _not_parts, list(paths), size)
        if parts is not None:
            return Partitions(parts)
    return partition([s for path in paths for s in load_data(domain, path)], size=size or 16)


def training_task(domain: str, model: Any, samples: list) -> TrainingTask:
    """The fine-tuning task of ``model`` on ``samples`` from ``domain``, checked."""
    owner = owned_domain(domain)
    return call_domain(owner, "training_task", _not_task, model, samples).validate(owner[0])


def _not_sections(found: Any) -> str | None:
    if found is None:
        return None
    if not isinstance(found, (list, tuple)):
        return f"{type(found).__name__}, not a list of ReportSection"
    bad = [type(x).__name__ for x in found if not isinstance(x, ReportSection)]
    return f"{bad[0]}, not ReportSection" if bad else None


def report_sections(result: dict) -> list[ReportSection]:
    """Report sections for ``result``: its domain's (``Domain.report_sections``), then
    every plugin's ``symplug_report_sections``, in call order. A plugin that fails or
    returns something else is recorded and left out."""
    pm = get_plugin_manager()
    sections: list[ReportSection] = []
    name = result.get("domain")
    plugin, domain = domains().get(name, (None, None)) if isinstance(name, str) else (None, None)
    if domain is not None and domain.report_sections is not None:
        try:
            found = domain.report_sections(result)
            problem = _not_sections(found) and f"returned {_not_sections(found)}"
        except (SymplugError, KeyboardInterrupt):
            raise
        except BaseException as exc:
            found, problem = None, f"failed: {describe(exc)}"
        if problem:
            pm.fail(plugin, f"report_sections of domain {name!r} {problem}")
        else:
            sections.extend(found or [])
    for _plugin, found in pm.call_each("symplug_report_sections", _not_sections, result=result):
        sections.extend(found or [])
    return sections


def _not_results(found: Any) -> str | None:
    if found is None:
        return None
    if not isinstance(found, dict) or not all(isinstance(r, dict) for r in found.values()):
        return f"{type(found).__name__}, not {{name: result dictionary}}"
    return None


def demo_results(out: Path, quick: bool, seed: int, progress: bool) -> dict[str, dict]:
    """``symplug demo``: every plugin's demo results, by name, plugins in alphabetical
    order; a plugin whose demo fails (not the user's mistake) is recorded and left out."""
    by_plugin = dict(get_plugin_manager().call_each("symplug_demo", _not_results, out=out,
                                                    quick=quick, seed=seed, progress=progress))
    results: dict[str, dict] = {}
    for plugin in sorted(by_plugin):
        for name, result in (by_plugin[plugin] or {}).items():
            if name in results:
                raise PluginError(f"plugin {plugin!r} returns demo result {name!r} twice")
            results[name] = result
    return results
