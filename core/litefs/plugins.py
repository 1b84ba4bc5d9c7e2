"""Building the plugin manager of one node or one CLI invocation.

There is no module-global plugin manager: :func:`load_plugins` returns a :class:`PluginRegistry`
that owns a pluggy ``PluginManager`` plus what the registration hooks produced (lease types,
config sections, backup types). Tests build as many as they like.

Which plugins load:

* every distribution publishing an entry point in the ``litefs`` group, built-in ones included;
* ``LITEFS_LOAD_PLUGINS=a,b`` (environment) loads only those entry-point names; an empty value
  loads none;
* ``LITEFS_DISABLE_PLUGINS=a,b`` (environment) blocks those names before they are imported;
* the ``plugins:`` section of litefs.yml (``enable:`` / ``disable:``) does the same from config.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy

from litefs import hookspecs
from litefs.lease import LeaseContext, Leaser

if TYPE_CHECKING:
    from litefs.config import Config


class PluginError(Exception):
    """A plugin could not be loaded, or the config selects something no plugin provides."""


@dataclass
class LeaseType:
    name: str
    factory: hookspecs.LeaseFactory
    config_type: Any
    plugin: str


@dataclass
class BackupType:
    name: str
    factory: Callable[..., Any]
    plugin: str


@dataclass
class PluginInfo:
    """One row of ``litefs plugins list``."""

    name: str
    distribution: str
    version: str
    hooks: list[str]
    enabled: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "hooks": self.hooks,
            "enabled": self.enabled,
        }


def _name_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


@dataclass
class PluginRegistry:
    """The plugin manager of one node, and what its plugins registered."""

    pm: pluggy.PluginManager
    lease_types: dict[str, LeaseType] = field(default_factory=dict)
    sections: dict[str, Any] = field(default_factory=dict)
    section_owners: dict[str, str] = field(default_factory=dict)
    backup_types: dict[str, BackupType] = field(default_factory=dict)

    @property
    def hook(self) -> Any:
        return self.pm.hook

    # -- registration ------------------------------------------------------------------------

    def _collect(self) -> None:
        """Call the registration hooks once per plugin, remembering which plugin registered what."""
        # Sorted by name so that conflicts are reported the same way on every run.
        for name, plugin in sorted(self.pm.list_name_plugin(), key=lambda item: item[0]):
            if plugin is None:  # blocked
                continue
            impl = getattr(plugin, "litefs_register_lease_types", None)
            if impl is not None:
                impl(register=self._lease_registrar(name))
            impl = getattr(plugin, "litefs_register_config_sections", None)
            if impl is not None:
                impl(register=self._section_registrar(name))
            impl = getattr(plugin, "litefs_register_backup_types", None)
            if impl is not None:
                impl(register=self._backup_registrar(name))

    def _lease_registrar(self, plugin: str) -> Callable[..., None]:
        def register(type_name: str, factory: hookspecs.LeaseFactory, config_type: Any = None) -> None:
            if type_name in self.lease_types:
                other = self.lease_types[type_name].plugin
                raise PluginError(f"lease type {type_name!r} registered twice: by {other} and by {plugin}")
            self.lease_types[type_name] = LeaseType(type_name, factory, config_type, plugin)
            if config_type is not None:
                self._add_section(f"lease.{type_name}", config_type, plugin)

        return register

    def _section_registrar(self, plugin: str) -> Callable[[str, Any], None]:
        def register(path: str, section_type: Any) -> None:
            self._add_section(path, section_type, plugin)

        return register

    def _backup_registrar(self, plugin: str) -> Callable[..., None]:
        def register(type_name: str, factory: Callable[..., Any]) -> None:
            if type_name in self.backup_types:
                other = self.backup_types[type_name].plugin
                raise PluginError(f"backup type {type_name!r} registered twice: by {other} and by {plugin}")
            self.backup_types[type_name] = BackupType(type_name, factory, plugin)

        return register

    def _add_section(self, path: str, section_type: Any, plugin: str) -> None:
        if path in self.sections:
            raise PluginError(
                f"config section {path!r} registered twice: by {self.section_owners[path]} and by {plugin}"
            )
        self.sections[path] = section_type
        self.section_owners[path] = plugin

    # -- selection ---------------------------------------------------------------------------

    def lease_type(self, name: str) -> LeaseType:
        """The backend selected by ``lease.type``; an error lists what is installed."""
        if name in self.lease_types:
            return self.lease_types[name]
        installed = ", ".join(
            f"{t.name!r} (from {t.plugin})" for t in sorted(self.lease_types.values(), key=lambda t: t.name)
        )
        if not name:
            raise PluginError(f"lease type required; installed lease types: {installed or 'none'}")
        raise PluginError(f"invalid lease type {name!r}; installed lease types: {installed or 'none'}")

    def backup_type(self, name: str) -> BackupType | None:
        """The uploader selected by ``backup.type`` ("" selects none)."""
        if not name:
            return None
        if name in self.backup_types:
            return self.backup_types[name]
        installed = ", ".join(repr(t) for t in sorted(self.backup_types)) or "none"
        raise PluginError(f"invalid backup client type {name!r}; installed backup types: {installed}")

    def create_leaser(self, config: Config, *, node_id: int, http_port: int) -> Leaser:
        """Build the lease backend chosen by ``config.lease.type`` for one node."""
        lease_type = self.lease_type(config.lease.type)
        hostname = config.lease.hostname or _os_hostname()
        advertise_url = config.lease.advertise_url or f"http://{hostname}:{http_port}"
        section = config.section(f"lease.{lease_type.name}") if lease_type.config_type is not None else None
        extra: dict[str, Any] = {}
        for result in reversed(self.hook.litefs_lease_value_extras(config=config)):
            extra.update(result or {})
        context = LeaseContext(
            config=config,
            section=section,
            hostname=hostname,
            advertise_url=advertise_url,
            node_id=node_id,
            extra=extra,
        )
        return lease_type.factory(context)

    # -- listing -----------------------------------------------------------------------------

    def list_plugins(self, config: Config | None = None) -> list[PluginInfo]:
        """Every loaded plugin with its distribution, version, hooks, and whether config enables it."""
        dists = {id(plugin): dist for plugin, dist in self.pm.list_plugin_distinfo()}
        rows = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:  # blocked
                continue
            dist = dists.get(id(plugin))
            hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
            enabled: bool | None = None
            if config is not None:
                impl = getattr(plugin, "litefs_plugin_enabled", None)
                if impl is not None:
                    enabled = impl(config=config)
            rows.append(
                PluginInfo(
                    name=name,
                    distribution=dist.project_name if dist else "",
                    version=dist.version if dist else "",
                    hooks=hooks,
                    enabled=enabled,
                )
            )
        return sorted(rows, key=lambda r: r.name)


def _os_hostname() -> str:
    import socket

    return socket.gethostname()


def load_plugins(
    *,
    enable: Iterable[str] | None = None,
    disable: Iterable[str] = (),
    extra: Mapping[str, object] | None = None,
    environ: Mapping[str, str] | None = None,
) -> PluginRegistry:
    """Build a plugin manager, load entry-point plugins and collect their registrations.

    ``enable`` (allow-list) and ``disable`` (deny-list) come from config; the environment variables
    ``LITEFS_LOAD_PLUGINS`` and ``LITEFS_DISABLE_PLUGINS`` are applied on top. ``extra`` registers
    plugin objects directly (tests use it).
    """
    env = os.environ if environ is None else environ
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)

    allow = list(enable) if enable is not None else None
    env_allow = _name_list(env.get("LITEFS_LOAD_PLUGINS"))
    if env_allow is not None:
        allow = env_allow if allow is None else [n for n in allow if n in env_allow]
    blocked = set(disable) | set(_name_list(env.get("LITEFS_DISABLE_PLUGINS")) or [])

    available = [ep for ep in importlib.metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP)]
    for ep in available:
        if ep.name in blocked or (allow is not None and ep.name not in allow):
            pm.set_blocked(ep.name)
    try:
        pm.load_setuptools_entrypoints(hookspecs.ENTRY_POINT_GROUP)
    except Exception as exc:  # a broken third-party plugin must name itself
        raise PluginError(
            f"cannot load plugins from entry-point group {hookspecs.ENTRY_POINT_GROUP!r}: {exc}"
        ) from exc
    for name, plugin in (extra or {}).items():
        pm.register(plugin, name=name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {exc.plugin!r} implements an unknown hook: {exc}") from exc

    registry = PluginRegistry(pm)
    registry._collect()
    return registry
