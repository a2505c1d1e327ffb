"""The plugin manager: entry points of group `mergekit_evo`, plus the built-ins, registered through the same hooks."""

from __future__ import annotations

import importlib
import importlib.metadata
from dataclasses import dataclass, field
from typing import Any

import pluggy

from mergekit_evo.plugin import hookspecs
from mergekit_evo.plugin.errors import UserError, close_matches

GROUP = "mergekit_evo"
KINDS = ("optimizers", "estimators", "task_backends", "mergers", "executors", "observers")
BUILTINS = (
    "mergekit_evo.run.optimizers",
    "mergekit_evo.estimate.estimators",
    "mergekit_evo.scoring.tasks",
    "mergekit_evo.merge.base",
    "mergekit_evo.merge.resident",
    "mergekit_evo.run.executors",
)


@dataclass
class Registry:
    """What the loaded plugins provide, by kind and name, and which distribution provided it.

    A name two distributions register is a conflict: `factories` and `providers` keep neither, `conflicts` keeps
    both, and a config that uses the name is refused, naming both, until its `providers:` mapping (name ->
    distribution) says which one to use. Nothing wins silently by load order.
    """

    factories: dict[str, dict[str, Any]] = field(default_factory=lambda: {k: {} for k in KINDS})
    providers: dict[str, dict[str, str]] = field(default_factory=lambda: {k: {} for k in KINDS})
    conflicts: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {k: {} for k in KINDS})
    failed: dict[str, str] = field(default_factory=dict)

    def add(self, kind: str, name: str, factory: Any, provider: str) -> None:
        if name in self.conflicts[kind]:
            self.conflicts[kind][name][provider] = factory
        elif name in self.factories[kind] and self.providers[kind][name] != provider:
            first = self.providers[kind].pop(name)
            self.conflicts[kind][name] = {first: self.factories[kind].pop(name), provider: factory}
        else:
            self.factories[kind][name] = factory
            self.providers[kind][name] = provider

    def names(self, kind: str) -> list[str]:
        return sorted({*self.factories[kind], *self.conflicts[kind]})

    def get(self, kind: str, name: str, field_name: str, prefer: dict[str, str] | None = None):
        """The factory registered as `name`; `prefer` (the config's `providers:`) settles a conflict."""
        if name in self.conflicts[kind]:
            by = self.conflicts[kind][name]
            chosen = (prefer or {}).get(name)
            if chosen in by:
                return by[chosen]
            what = f"providers.{name}: {chosen!r} does not provide it" if chosen else field_name
            raise UserError(
                f"{what}: {kind[:-1].replace('_', ' ')} {name!r} is registered by {' and '.join(sorted(by))}; "
                f"say which one in the config, e.g. `providers: {{{name}: {sorted(by)[0]}}}`, or uninstall one"
            )
        if name not in self.factories[kind]:
            raise UserError(
                f"{field_name}: no {kind[:-1].replace('_', ' ')} named {name!r} is installed; "
                f"{close_matches(name, self.names(kind))}"
            )
        return self.factories[kind][name]


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, plus what loading the entry points found: each plugin's distribution, and the failures."""

    def __init__(self) -> None:
        super().__init__(GROUP)
        self.add_hookspecs(hookspecs)
        self.distributions: dict[str, str] = {}  # plugin name -> the distribution that provided it
        self.failed_plugins: dict[str, str] = {}  # entry-point name -> why it did not load


_manager: PluginManager | None = None


def _distribution_of(pm: PluginManager, plugin) -> str:
    """Entry-point plugins carry the distribution recorded when they were loaded; others are built-in or in code."""
    name = pm.get_name(plugin)
    if name in pm.distributions:
        return pm.distributions[name]
    return "mergekit-evo (built-in)" if name in BUILTINS else "(registered in code)"


def get_plugin_manager() -> PluginManager:
    """The one plugin manager, built on first use; a plugin that fails to import is reported, not fatal."""
    global _manager
    if _manager is not None:
        return _manager
    pm = PluginManager()
    for ep in importlib.metadata.entry_points(group=GROUP):
        try:
            pm.register(ep.load(), name=ep.name)
            pm.distributions[ep.name] = ep.dist.name if ep.dist else ep.name
        except Exception as e:  # a broken third-party plugin must not take the tool down
            pm.failed_plugins[ep.name] = f"{type(e).__name__}: {e}"
    for module in BUILTINS:
        if not pm.has_plugin(module):
            pm.register(importlib.import_module(module), name=module)
    _manager = pm
    return pm


def registry(pm: PluginManager | None = None) -> Registry:
    pm = pm or get_plugin_manager()
    reg = Registry(failed=dict(pm.failed_plugins))
    for kind in KINDS:
        hook = getattr(pm.hook, f"register_{kind}")
        for impl in hook.get_hookimpls():
            provider = _distribution_of(pm, impl.plugin)

            def register(name: str, factory, _kind=kind, _provider=provider) -> None:
                reg.add(_kind, name, factory, _provider)

            impl.function(register=register)
    return reg


def check_plugin_names(config, reg: Registry) -> None:
    """Refuse unknown or ambiguous plugin names (and observers' bad options) before any work starts."""
    reg.get("optimizers", config.optimizer.name, "optimizer.name", config.providers)
    reg.get("estimators", config.estimator.name, "estimator.name", config.providers)
    reg.get("mergers", config.merger.name, "merger.name", config.providers)
    reg.get("executors", config.executor.name, "executor.name", config.providers)
    for i, task in enumerate(config.tasks):
        reg.get("task_backends", task.backend, f"tasks[{i}].backend", config.providers)
    for i, observer in enumerate(config.observers):
        reg.get("observers", observer.name, f"observers[{i}]", config.providers).check_options(
            observer.options, f"observers[{i}].options"
        )
