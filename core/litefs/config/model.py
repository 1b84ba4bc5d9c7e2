"""The config dataclasses with LiteFS's defaults, and what reads them back out.

:class:`Config` holds LiteFS's core keys (its sub-dataclasses are the core sections) plus the
sections plugins registered. This module also knows how a dataclass field maps to a YAML key
(field metadata ``key``, ``duration``, ``secret``, ``internal``), which the converter shares, the
default of any field type (:func:`default_for`), the YAML dump of an effective config
(:func:`dump_yaml`) and LiteFS's checks of a converted config (:func:`validate`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from litefs.durations import format_duration

from .errors import ConfigError

__all__ = [
    "MASK",
    "Config",
    "DataConfig",
    "FuseConfig",
    "HTTPConfig",
    "LeaseConfig",
    "LogConfig",
    "TracingConfig",
    "default_for",
    "dump_yaml",
    "is_dict_type",
    "is_list_type",
    "is_required",
    "is_union_type",
    "type_hints",
    "validate",
    "yaml_fields",
]

#: What :meth:`Config.to_dict` shows instead of a secret's value.
MASK = "********"


# --- fields and types ---------------------------------------------------------------------------


def _duration(default: float) -> Any:
    return field(default=default, metadata={"duration": True})


def yaml_fields(cls: type) -> dict[str, dataclasses.Field[Any]]:
    """The fields of a config dataclass by YAML key, in declaration order.

    The key is the ``key`` metadata, else the field name with ``_`` turned into ``-``; fields
    that are not ``__init__`` arguments or are marked ``internal`` have no key.
    """
    return {
        f.metadata.get("key") or f.name.replace("_", "-"): f
        for f in dataclasses.fields(cls)
        if f.init and not f.metadata.get("internal")
    }


def is_required(f: dataclasses.Field[Any]) -> bool:
    """A field without a default is a required key."""
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


_hints_cache: dict[type, dict[str, Any]] = {}


def type_hints(cls: type) -> dict[str, Any]:
    """The resolved field types of a dataclass (annotations are strings under PEP 563), cached."""
    if cls not in _hints_cache:
        _hints_cache[cls] = typing.get_type_hints(cls)
    return _hints_cache[cls]


def is_union_type(tp: Any) -> bool:
    """``A | B`` or ``Optional[A]``/``Union[A, B]``."""
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def is_list_type(tp: Any) -> bool:
    """``list`` or ``list[X]``."""
    return tp is list or typing.get_origin(tp) is list


def is_dict_type(tp: Any) -> bool:
    """``dict`` or ``dict[K, V]``."""
    return tp is dict or typing.get_origin(tp) is dict


def default_for(tp: Any) -> Any:
    """The value a section or field of type ``tp`` has when the file does not set it.

    A dataclass is default-constructed (``None`` if it has required fields); a union containing
    ``None`` is ``None``; a list/dict is empty; ``str``/``int``/``float``/``bool`` are their zero
    values; a ``Literal`` its first value.
    """
    if dataclasses.is_dataclass(tp):
        if any(is_required(f) for f in dataclasses.fields(tp) if f.init):
            return None  # a section with required keys has no default value
        return tp()
    if is_union_type(tp):
        args = typing.get_args(tp)
        if type(None) in args:
            return None
        return default_for(args[0])
    if is_list_type(tp):
        return []
    if is_dict_type(tp):
        return {}
    if typing.get_origin(tp) is Literal:
        return typing.get_args(tp)[0]
    if tp in (str, int, float, bool):
        return tp()
    return None


# --- core sections ------------------------------------------------------------------------------


@dataclass
class FuseConfig:
    """``fuse``: the mount."""

    dir: str = "/litefs"
    """Mount point; required."""
    allow_other: bool = False
    """Add the FUSE ``allow_other`` option (needs ``user_allow_other`` in /etc/fuse.conf)."""
    debug: bool = False
    """Log every FUSE request."""


@dataclass
class DataConfig:
    """``data``: internal storage of databases and LTX files."""

    dir: str = "/var/lib/litefs"
    """Required; must differ from ``fuse.dir``."""
    compress: bool = True
    """LZ4-compress LTX bodies."""
    retention: float = _duration(600.0)
    """Minimum age (seconds) before an LTX file may be deleted; the newest is always kept."""
    retention_monitor_interval: float = _duration(60.0)
    """How often retention runs (seconds; 0 = never)."""


@dataclass
class HTTPConfig:
    """``http``: the node API."""

    addr: str = ":20202"
    snapshot_timeout: float = _duration(0.0)
    """Max time to send one snapshot on a stream; 0 means use ``data.retention``."""


@dataclass
class LeaseConfig:
    """``lease``: the keys common to every lease type. ``lease.<type>`` belongs to the lease plugin."""

    type: str = ""
    """Selects the lease plugin; checked by the plugin registry, not here."""
    hostname: str = ""
    advertise_url: str = ""
    candidate: bool = True
    promote: bool = False
    reconnect_delay: float = _duration(1.0)
    demote_delay: float = _duration(10.0)
    databases: list[str] = field(default_factory=list)
    """Replicate only these databases (not allowed on candidates)."""


@dataclass
class LogConfig:
    """``log``: the process log on stderr."""

    format: Literal["text", "json"] = "text"
    timestamp: bool = False
    debug: bool = False


@dataclass
class TracingConfig:
    """``tracing``: the low-level rolling trace log (on only when ``path`` is set)."""

    enabled: bool = True
    path: str = ""
    max_size: int = 64
    """Megabytes per file before rolling."""
    max_count: int = 8
    compress: bool = True


@dataclass
class Config:
    """The effective litefs.yml: LiteFS's core keys, plus the sections plugins registered.

    ``sections`` maps a dotted section path (``"proxy"``, ``"exec"``, ``"lease.consul"``) to its
    converted value; after :func:`~litefs.config.load_config` every registered section is present
    (absent ones hold their defaults). Read them with :meth:`section`.
    """

    exit_on_error: bool = True
    skip_sync: bool = False
    strict_verify: bool = False
    fuse: FuseConfig = field(default_factory=FuseConfig)
    data: DataConfig = field(default_factory=DataConfig)
    http: HTTPConfig = field(default_factory=HTTPConfig)
    lease: LeaseConfig = field(default_factory=LeaseConfig)
    log: LogConfig = field(default_factory=LogConfig)
    tracing: TracingConfig = field(default_factory=TracingConfig)
    sections: dict[str, Any] = field(default_factory=dict, metadata={"internal": True})
    section_types: dict[str, Any] = field(
        default_factory=dict, repr=False, compare=False, metadata={"internal": True}
    )
    """The types registered for plugin sections (what ``sections`` was converted with)."""
    source: str | None = field(default=None, repr=False, compare=False, metadata={"internal": True})
    """The file this config was read from, if any."""
    key_lines: dict[str, int] = field(
        default_factory=dict, repr=False, compare=False, metadata={"internal": True}
    )
    """Line of each key path that appeared in the file (for error messages)."""

    def section(self, path: str) -> Any:
        """The value of a plugin section; its default when the file did not have it.

        Raises ``KeyError`` if no plugin registered ``path`` (so a typo fails loudly).
        """
        if path in self.sections:
            return self.sections[path]
        if path in self.section_types:
            return default_for(self.section_types[path])
        raise KeyError(f"no plugin registered the config section {path!r}")

    def to_dict(self, mask_secrets: bool = True) -> dict[str, Any]:
        """The effective config as plain YAML-ready data with kebab-case keys.

        Durations are Go duration strings, secrets are ``********`` (when set and ``mask_secrets``),
        plugin sections sit at their dotted path; sections whose value is ``None`` are left out.
        """
        out = _to_plain(self, mask_secrets)
        for path in sorted(self.sections, key=lambda p: p.count(".")):
            value = self.sections[path]
            if value is None:
                continue
            *parents, last = path.split(".")
            target = out
            for part in parents:
                target = target.setdefault(part, {})
            target[last] = _to_plain(value, mask_secrets)
        return out


def _to_plain(value: Any, mask: bool, f: dataclasses.Field[Any] | None = None) -> Any:
    if f is not None and f.metadata.get("secret") and mask and value:
        return MASK
    if f is not None and f.metadata.get("duration") and isinstance(value, int | float):
        return format_duration(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            key: _to_plain(getattr(value, sub.name), mask, sub)
            for key, sub in yaml_fields(type(value)).items()
        }
    if isinstance(value, list | tuple):
        return [_to_plain(item, mask) for item in value]
    if isinstance(value, dict):
        return {str(k): _to_plain(v, mask) for k, v in value.items()}
    return value


def dump_yaml(config: Config, *, mask_secrets: bool = True) -> str:
    """The effective config as YAML (``litefs config show``); LiteFS and litefs-py can read it back."""
    return yaml.safe_dump(
        config.to_dict(mask_secrets=mask_secrets),
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
    )


def validate(config: Config) -> None:
    """LiteFS's ``MountCommand.Validate`` checks, with its messages (the lease type is checked by
    the plugin registry, which knows the installed types)."""

    def fail(message: str, key: str) -> None:
        raise ConfigError(message, path=config.source, line=config.key_lines.get(key), key=key)

    if config.fuse.dir == "":
        fail("fuse directory required", "fuse.dir")
    if config.data.dir == "":
        fail("data directory required", "data.dir")
    if config.fuse.dir == config.data.dir:
        fail("fuse directory and data directory cannot be the same path", "data.dir")
    if config.lease.candidate and config.lease.databases:
        fail("cannot specify a database replication filter on candidate nodes", "lease.databases")
