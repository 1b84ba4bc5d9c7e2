"""litefs.yml: finding, expanding, parsing and validating it the way LiteFS v0.5.14 does.

The file is read as text, ``$VAR``/``${...}`` references are expanded (:func:`expand_env`, unless
``-no-expand-env``), the YAML is composed into a node tree (so every value keeps its line), and a
strict converter turns the tree into the dataclasses below. LiteFS's rules carry over:

* every key has LiteFS's default; an unknown key is an error naming the key path, file and line;
* booleans, integers and strings are read as Go's yaml.v3 reads them into typed fields (``yes``/
  ``on`` are booleans, any scalar is accepted as a string, a quoted ``"true"`` is not a boolean);
* durations are Go duration strings (``10s``, ``1m30s``, ``500ms``) held as float seconds.

Sections that LiteFS has but litefs-py moves into plugins (``proxy``, ``exec``, ``backup``,
``metrics``, ``lease.consul``, ``lease.etcd``, ...) are not defined here. A plugin registers a type
for its dotted section path; :func:`load_config` receives that mapping as ``sections`` and converts
each registered section with the same converter, storing the result in ``Config.sections``.

Fields of any dataclass (core or plugin) may carry metadata:

* ``{"duration": True}`` on a ``float`` field: a Go duration string, stored as seconds;
* ``{"secret": True}`` on a ``str`` field: may be given as ``{"$env": "VAR"}`` or
  ``{"$file": "path"}`` (relative paths are relative to the config file's directory; surrounding
  whitespace of the file is removed), and is masked as ``********`` by :meth:`Config.to_dict`;
* ``{"key": "name"}``: the YAML key, when it is not the field name with ``_`` turned into ``-``.

A field without a default is a required key. A plugin dataclass may check its values in
``__post_init__``: a ``ValueError`` raised there is reported like any other config error, with the
section's key path, file and line.

Deliberate differences from LiteFS: an empty file (or one with only comments) gives the defaults
instead of Go's ``EOF`` error; a bare ``0`` is accepted as a zero duration (Go only accepts the
string); an integer field rejects a fractional number instead of truncating it; a file with more
than one YAML document is an error instead of silently ignoring the rest; and while loading, the
unbraced ``$env`` and ``$file`` are not expanded, because they are the secret-reference keys
(``${env}`` still expands a variable named ``env``; :func:`expand_env` itself is exactly Go's).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import socket
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from litefs.durations import DurationError, format_duration, parse_duration

__all__ = [
    "MASK",
    "Config",
    "ConfigError",
    "DataConfig",
    "FuseConfig",
    "HTTPConfig",
    "LeaseConfig",
    "LogConfig",
    "TracingConfig",
    "config_search_paths",
    "default_for",
    "dump_yaml",
    "expand_env",
    "find_config_path",
    "format_duration",
    "load_config",
    "parse_config",
    "parse_duration",
    "validate",
]

#: What :meth:`Config.to_dict` shows instead of a secret's value.
MASK = "********"


# --- errors ------------------------------------------------------------------------------------


class ConfigError(Exception):
    """A problem with litefs.yml: not found, unreadable, bad YAML, bad key or value, or invalid.

    ``path`` is the config file (``None`` when the config did not come from a file), ``line`` the
    1-based line of the offending value (``None`` when unknown), ``key`` the dotted key path
    (``lease.consul.ttl``, ``exec[1].cmd``; ``None`` when the problem is not about one key) and
    ``message`` the bare message. When several problems were found, ``errors`` lists them all (the
    attributes above describe the first) and ``str()`` prints one per line. The CLI exits 2.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | os.PathLike[str] | None = None,
        line: int | None = None,
        key: str | None = None,
        errors: list[ConfigError] | None = None,
    ) -> None:
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line
        self.key = key
        self.errors: list[ConfigError] = errors if errors else [self]
        super().__init__(message)

    def _one(self) -> str:
        if self.path is not None and self.line is not None:
            return f"{self.path}:{self.line}: {self.message}"
        if self.path is not None:
            return f"{self.path}: {self.message}"
        return self.message

    def __str__(self) -> str:
        if len(self.errors) > 1:
            return "\n".join(err._one() for err in self.errors)
        return self._one()


# --- core sections ------------------------------------------------------------------------------


def _duration(default: float) -> Any:
    return field(default=default, metadata={"duration": True})


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
    converted value; after :func:`load_config` every registered section is present (absent ones
    hold their defaults). Read them with :meth:`section`.
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


def dump_yaml(config: Config, *, mask_secrets: bool = True) -> str:
    """The effective config as YAML (``litefs config show``); LiteFS and litefs-py can read it back."""
    return yaml.safe_dump(
        config.to_dict(mask_secrets=mask_secrets),
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
    )


def _yaml_key(f: dataclasses.Field[Any]) -> str:
    return f.metadata.get("key") or f.name.replace("_", "-")


def _config_fields(cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if f.init and not f.metadata.get("internal")]


def _to_plain(value: Any, mask: bool, f: dataclasses.Field[Any] | None = None) -> Any:
    if f is not None and f.metadata.get("secret") and mask and value:
        return MASK
    if f is not None and f.metadata.get("duration") and isinstance(value, int | float):
        return format_duration(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            _yaml_key(sub): _to_plain(getattr(value, sub.name), mask, sub)
            for sub in _config_fields(type(value))
        }
    if isinstance(value, list | tuple):
        return [_to_plain(item, mask) for item in value]
    if isinstance(value, dict):
        return {str(k): _to_plain(v, mask) for k, v in value.items()}
    return value


# --- environment expansion ----------------------------------------------------------------------

# Go's regexp \w and \s are ASCII-only: [0-9A-Za-z_] and [\t\n\f\r ]; '.' does not match '\n'.
_W = r"[0-9A-Za-z_]+"
_S = r"[\t\n\f\r ]*"
_EXPR_SINGLE = re.compile(rf"({_W}){_S}(==|!=){_S}'([^\n]*)'")
_EXPR_DOUBLE = re.compile(rf'({_W}){_S}(==|!=){_S}"([^\n]*)"')
_EXPR_VAR = re.compile(rf"({_W}){_S}(==|!=){_S}({_W})")

# Go's strings.TrimSpace trims what unicode.IsSpace accepts (not quite Python's str.isspace).
_GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)

_SHELL_SPECIAL = set("*#$@!?-0123456789")


def _is_alnum(ch: str) -> bool:
    return ch == "_" or ("0" <= ch <= "9") or ("a" <= ch <= "z") or ("A" <= ch <= "Z")


def _shell_name(s: str) -> tuple[str, int]:
    """Go's os.getShellName: the name after a ``$`` and how many characters it used."""
    if s[0] == "{":
        if len(s) > 2 and s[1] in _SHELL_SPECIAL and s[2] == "}":
            return s[1], 3
        end = s.find("}", 1)
        if end == 1:
            return "", 2  # "${}": bad syntax, both characters are dropped
        if end == -1:
            return "", 1  # "${" never closed: the "${" is dropped
        return s[1:end], end + 1
    if s[0] in _SHELL_SPECIAL:
        return s[0], 1
    i = 0
    while i < len(s) and _is_alnum(s[i]):
        i += 1
    return s[:i], i


def _expand_one(name: str, environ: Mapping[str, str]) -> str:
    """LiteFS's mapping function: the ``==``/``!=`` forms, else an environment lookup."""
    name = name.strip(_GO_SPACE)
    for pattern, literal in ((_EXPR_SINGLE, True), (_EXPR_DOUBLE, True), (_EXPR_VAR, False)):
        match = pattern.fullmatch(name)
        if match:
            left = environ.get(match[1], "")
            right = match[3] if literal else environ.get(match[3], "")
            equal = left == right
            return "true" if equal == (match[2] == "==") else "false"
    return environ.get(name, "")


def expand_env(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Expand ``$NAME`` and ``${...}`` in raw text exactly like LiteFS's ``ExpandEnv``.

    It follows Go's ``os.Expand``: ``$NAME`` takes the longest run of ``[A-Za-z0-9_]``; ``$`` followed
    by one of ``*#$@!?-`` or a digit is a one-character name (``$1``, ``$$``: both look up an
    environment variable of that name, usually unset); a ``$`` followed by anything else, or at the
    end, stays as it is; ``${}`` is dropped; an unclosed ``${`` loses those two characters. There is
    no escape syntax. Inside ``${...}`` the text is trimmed, then ``NAME == 'lit'``,
    ``NAME != "lit"`` and ``NAME == OTHER`` give ``true``/``false``; anything else is looked up
    (unset gives ``""``). ``environ`` defaults to ``os.environ``.
    """
    return _expand(text, os.environ if environ is None else environ, frozenset())


#: Unbraced names that config loading leaves alone: ``{"$env": VAR}``/``{"$file": path}`` are secret
#: references, not variables (``${env}`` still expands a variable named ``env``).
_SECRET_KEYS = frozenset({"env", "file"})


def _expand(text: str, env: Mapping[str, str], keep: frozenset[str]) -> str:
    """Go's os.Expand with LiteFS's mapping; unbraced names in ``keep`` are left as written."""
    out: list[str] = []
    i = 0
    j = 0
    n = len(text)
    while j < n:
        if text[j] == "$" and j + 1 < n:
            out.append(text[i:j])
            name, width = _shell_name(text[j + 1 :])
            if name == "" and width > 0:
                pass  # invalid syntax: the characters are eaten
            elif name == "":
                out.append("$")  # '$' not followed by a name stays
            elif name in keep and text[j + 1] != "{":
                out.append("$" + name)
            else:
                out.append(_expand_one(name, env))
            j += width
            i = j + 1
        j += 1
    out.append(text[i:])
    return "".join(out)


# --- finding the file ---------------------------------------------------------------------------


def _os_home() -> Path | None:
    """The home directory from the OS user record, as LiteFS (Go's user.Current) finds it."""
    try:
        import pwd

        home = pwd.getpwuid(os.getuid()).pw_dir
        if home:
            return Path(home)
    except (ImportError, KeyError, OSError):
        pass
    env_home = os.environ.get("HOME")
    return Path(env_home) if env_home else None


def config_search_paths(*, cwd: Path | None = None, home: Path | None = None) -> list[Path]:
    """Where litefs.yml is looked for, in order: working directory, home directory, /etc."""
    base = Path.cwd() if cwd is None else Path(cwd)
    paths = [(base / "litefs.yml").absolute()]
    home_dir = _os_home() if home is None else Path(home)
    if home_dir is not None and str(home_dir):
        paths.append(home_dir / "litefs.yml")
    paths.append(Path("/etc/litefs.yml"))
    return paths


def find_config_path(
    explicit: str | os.PathLike[str] | None, *, cwd: Path | None = None, home: Path | None = None
) -> Path:
    """The config file to read: ``explicit`` (``-config PATH``) or the first file of the search path.

    The search path is ``./litefs.yml`` (made absolute), ``<home>/litefs.yml`` (home from the OS
    user record, like LiteFS; ``home`` overrides it), ``/etc/litefs.yml``. Raises
    :class:`ConfigError` (``config file not found``) when nothing is found, or when ``explicit``
    does not exist.
    """
    if explicit is not None and str(explicit) != "":
        path = Path(explicit)
        if not path.exists():
            raise ConfigError("config file not found", path=path)
        return path
    for path in config_search_paths(cwd=cwd, home=home):
        if path.exists():
            return path
    raise ConfigError("config file not found")


# --- YAML node tree -----------------------------------------------------------------------------

_PLAIN_TAG = "!litefs/plain"
_STR_TAG = "tag:yaml.org,2002:str"
_TAG_KINDS = {
    "tag:yaml.org,2002:str": "str",
    "tag:yaml.org,2002:bool": "bool",
    "tag:yaml.org,2002:int": "int",
    "tag:yaml.org,2002:float": "float",
    "tag:yaml.org,2002:null": "null",
}
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"

_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """Composes nodes without PyYAML's YAML 1.1 scalar resolution: plain scalars are marked as such
    and resolved later with yaml.v3's rules (PyYAML would read ``on``, ``0777`` and ``1:30`` as 1.1)."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is yaml.ScalarNode and implicit[0]:
            return _PLAIN_TAG
        return super().resolve(kind, value, implicit)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


_NULLS = {"", "~", "null", "Null", "NULL"}
_TRUE = {"true", "True", "TRUE"}
_FALSE = {"false", "False", "FALSE"}
# yaml.v3 accepts YAML 1.1 booleans, but only when decoding into a bool field (quoted or not).
_TRUE_11 = {"y", "Y", "yes", "Yes", "YES", "on", "On", "ON"}
_FALSE_11 = {"n", "N", "no", "No", "NO", "off", "Off", "OFF"}
_SPECIAL_FLOATS = {
    ".nan": math.nan,
    ".NaN": math.nan,
    ".NAN": math.nan,
    **{p + s: math.inf for p in ("", "+") for s in (".inf", ".Inf", ".INF")},
    **{"-" + s: -math.inf for s in (".inf", ".Inf", ".INF")},
}
_YAML_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([Tt ].*)?")
_INT_BODY = {
    2: re.compile(r"[01]+"),
    8: re.compile(r"[0-7]+"),
    10: re.compile(r"[0-9]+"),
    16: re.compile(r"[0-9a-fA-F]+"),
}


def _go_parse_int(text: str) -> int | None:
    """strconv.ParseInt(text, 0, 64) (with uint64 overflow allowed), or None."""
    s = text
    sign = 1
    if s[:1] in ("+", "-"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    base = 10
    if s[:2] in ("0x", "0X"):
        base, s = 16, s[2:]
    elif s[:2] in ("0o", "0O"):
        base, s = 8, s[2:]
    elif s[:2] in ("0b", "0B"):
        base, s = 2, s[2:]
    elif len(s) > 1 and s[0] == "0":
        base, s = 8, s[1:]
    if not _INT_BODY[base].fullmatch(s):
        return None
    value = sign * int(s, base)
    # int64, or uint64 for non-negative values (yaml.v3 tries ParseInt, then ParseUint)
    if value < -(1 << 63) or value >= (1 << 64):
        return None
    return value


def _resolve_plain(text: str) -> tuple[str, Any]:
    """Resolve an untagged plain scalar as yaml.v3 does: (kind, value), kind in null/bool/int/float/
    timestamp/str."""
    if text in _NULLS:
        return "null", None
    if text in _TRUE:
        return "bool", True
    if text in _FALSE:
        return "bool", False
    if text in _SPECIAL_FLOATS:
        return "float", _SPECIAL_FLOATS[text]
    first = text[0]
    if first == ".":
        if _YAML_FLOAT.fullmatch(text):
            return "float", float(text)
    elif first.isdigit() or first in "+-":
        if _TIMESTAMP.fullmatch(text):
            return "timestamp", text
        plain = text.replace("_", "")
        value = _go_parse_int(plain) if plain else None
        if value is not None:
            return "int", value
        if _YAML_FLOAT.fullmatch(plain):
            return "float", float(plain)
    return "str", text


def _scalar_kind(node: yaml.ScalarNode) -> tuple[str, Any]:
    """(kind, value) of a scalar; quoted or ``!!str`` scalars are strings."""
    if node.tag == _PLAIN_TAG:
        return _resolve_plain(node.value)
    kind = _TAG_KINDS.get(node.tag)
    if kind == "str" or kind is None:
        return "str", node.value
    resolved_kind, value = _resolve_plain(node.value) if node.value else ("null", None)
    if resolved_kind == kind or (kind == "float" and resolved_kind == "int"):
        return kind, float(value) if kind == "float" else value
    raise _TypeProblem(f"cannot read {node.value!r} as {node.tag.rsplit(':', 1)[-1]}")


class _TypeProblem(Exception):
    """Raised inside the converter; turned into a ConfigError with the key path and line."""


def _describe(node: yaml.Node) -> str:
    """How a node looks to a user, for 'found ...' in messages."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    try:
        kind, _ = _scalar_kind(node)
    except _TypeProblem:
        kind = "str"
    if kind == "null":
        return "nothing (null)"
    if kind == "str":
        quoted = "quoted " if node.tag != _PLAIN_TAG else ""
        return f"the {quoted}string {_q(node.value)}"
    names = {"bool": "the boolean", "int": "the integer", "float": "the number", "timestamp": "the date"}
    return f"{names[kind]} {node.value}"


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- the strict converter -----------------------------------------------------------------------


class _Keep:
    """Sentinel: no value to set. The YAML value was null, so the field keeps its default (yaml.v3
    behaviour), or it was bad and the error is already recorded."""


_KEEP = _Keep()

#: Sections LiteFS has that litefs-py's plugins provide, for a helpful unknown-key message.
_PLUGIN_SECTIONS = {
    "exec": "exec_supervisor",
    "proxy": "proxy",
    "backup": "backup_s3",
    "metrics": "metrics",
    "lease.consul": "lease_consul",
    "lease.etcd": "lease_etcd",
}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is str:
        return "a string"
    if tp is bool:
        return "a boolean"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is type(None):
        return "nothing"
    if origin is list:
        return "a list"
    if origin is dict or dataclasses.is_dataclass(tp):
        return "a mapping"
    if origin is Literal:
        return "one of " + ", ".join(
            _q(str(a)) if isinstance(a, str) else str(a) for a in typing.get_args(tp)
        )
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


_hints_cache: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _hints_cache:
        _hints_cache[cls] = typing.get_type_hints(cls)
    return _hints_cache[cls]


def default_for(tp: Any) -> Any:
    """The value a section or field of type ``tp`` has when the file does not set it.

    A dataclass is default-constructed (``None`` if it has required fields); a union containing
    ``None`` is ``None``; a list/dict is empty; ``str``/``int``/``float``/``bool`` are their zero
    values; a ``Literal`` its first value.
    """
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if any(_required(f) for f in dataclasses.fields(tp) if f.init):
            return None  # a section with required keys has no default value
        return tp()
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if type(None) in args:
            return None
        return default_for(args[0])
    if origin is list or tp is list:
        return []
    if origin is dict or tp is dict:
        return {}
    if origin is Literal:
        return typing.get_args(tp)[0]
    if tp in (str, int, float, bool):
        return tp()
    return None


class _Converter:
    """One conversion run: knows the file, the registered sections and collects every error."""

    def __init__(
        self, file: str | None, sections: Mapping[str, Any], environ: Mapping[str, str], base_dir: Path
    ):
        self.file = file
        self.sections = dict(sections)
        self.environ = environ
        self.base_dir = base_dir
        self.errors: list[ConfigError] = []
        self.found_sections: dict[str, Any] = {}
        self.key_lines: dict[str, int] = {}

    def error(self, message: str, node: yaml.Node | None, key: str | None) -> None:
        line = _line(node) if node is not None else None
        self.errors.append(ConfigError(message, path=self.file, line=line, key=key))

    # -- mappings ---------------------------------------------------------------------------

    def items(self, node: yaml.MappingNode, path: str) -> list[tuple[str, yaml.Node, yaml.Node]]:
        """(key, key node, value node) of a mapping, with ``<<`` merge keys applied and duplicates
        rejected (yaml.v3: ``mapping key "x" already defined at line N``)."""
        explicit: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        merged: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.error(
                    f"{_where(path)}keys must be strings, found {_describe(key_node)}", key_node, path or None
                )
                continue
            key = key_node.value
            if key == "<<" and key_node.tag == _PLAIN_TAG:
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for source in sources:
                    if not isinstance(source, yaml.MappingNode):
                        self.error(
                            "a merge key (<<) needs a mapping or a list of mappings", source, path or None
                        )
                        continue
                    for sub_key, sub_key_node, sub_value in self.items(source, path):
                        merged.setdefault(sub_key, (sub_key_node, sub_value))
                continue
            if key in explicit:
                first = _line(explicit[key][0])
                self.error(f'mapping key "{key}" already defined at line {first}', key_node, _join(path, key))
                continue
            explicit[key] = (key_node, value_node)
        result = dict(merged)
        result.update(explicit)
        return [(k, kn, vn) for k, (kn, vn) in result.items()]

    def dataclass(self, node: yaml.Node, cls: type, path: str) -> Any:
        if not isinstance(node, yaml.MappingNode):
            raise _TypeProblem(f"expected a mapping, found {_describe(node)}")
        hints = _hints(cls)
        fields = {_yaml_key(f): f for f in _config_fields(cls)}
        kwargs: dict[str, Any] = {}
        seen: set[str] = set()
        failed_required = False
        for key, key_node, value_node in self.items(node, path):
            key_path = _join(path, key)
            self.key_lines[key_path] = _line(key_node)
            seen.add(key)
            f = fields.get(key)
            if f is None:
                if key_path in self.sections:
                    self.section(value_node, key_path)
                elif self._is_container(key_path):
                    self.container(value_node, key_path)
                else:
                    self.unknown_key(key, key_node, path, sorted(fields) + self._children(path))
                continue
            before = len(self.errors)
            value = self.field_value(value_node, hints[f.name], f, key_path)
            if value is not _KEEP:
                kwargs[f.name] = value
            elif len(self.errors) > before and _required(f):
                failed_required = True
        missing = [key for key, f in fields.items() if _required(f) and key not in seen]
        if missing:
            raise _TypeProblem(f"missing required key {_q(_join(path, missing[0]))}")
        if failed_required:
            return _KEEP  # a required key had a bad value (already reported): nothing to build
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            # A plugin may check its section in __post_init__; its message gets the key and line.
            raise _TypeProblem(str(exc)) from exc

    def section(self, node: yaml.Node, path: str) -> None:
        """Convert a plugin-registered section and remember it."""
        tp = self.sections[path]
        before = len(self.errors)
        value = self.convert(node, tp, path, None)
        if len(self.errors) == before:
            self.found_sections[path] = default_for(tp) if value is _KEEP else value

    def _children(self, path: str) -> list[str]:
        """Registered sections directly below ``path``."""
        prefix = f"{path}." if path else ""
        return sorted(
            {p[len(prefix) :].split(".")[0] for p in self.sections if p.startswith(prefix) and p != path}
        )

    def _is_container(self, path: str) -> bool:
        return any(p.startswith(path + ".") for p in self.sections)

    def container(self, node: yaml.Node, path: str) -> None:
        """A mapping that only holds registered subsections (e.g. ``acme`` for ``acme.widget``)."""
        if _is_null(node):
            return
        if not isinstance(node, yaml.MappingNode):
            self.error(f"{_where(path)}expected a mapping, found {_describe(node)}", node, path)
            return
        for key, key_node, value_node in self.items(node, path):
            key_path = _join(path, key)
            self.key_lines[key_path] = _line(key_node)
            if key_path in self.sections:
                self.section(value_node, key_path)
            elif self._is_container(key_path):
                self.container(value_node, key_path)
            else:
                self.unknown_key(key, key_node, path, self._children(path))

    def unknown_key(self, key: str, key_node: yaml.Node, parent: str, known: list[str]) -> None:
        key_path = _join(parent, key)
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        if close:
            message = f"unknown key {_q(key_path)} (did you mean {_q(close[0])}?)"
        elif key_path in _PLUGIN_SECTIONS:
            message = (
                f"unknown key {_q(key_path)}: no installed plugin provides this section "
                f"(LiteFS's {_q(key_path)} comes with the {_q(_PLUGIN_SECTIONS[key_path])} plugin)"
            )
        elif parent == "lease":
            message = (
                f"unknown key {_q(key_path)}: not a lease key, and no installed lease plugin "
                f"provides a {_q(key_path)} section"
            )
        else:
            message = f"unknown key {_q(key_path)}: not a litefs key and no installed plugin provides it"
            if known:
                message += f" (known keys here: {', '.join(known)})"
        self.error(message, key_node, key_path)

    # -- values -----------------------------------------------------------------------------

    def field_value(self, node: yaml.Node, tp: Any, f: dataclasses.Field[Any], path: str) -> Any:
        if f.metadata.get("secret") and isinstance(node, yaml.MappingNode):
            node = self.secret(node, path)
            if node is None:
                return _KEEP
        return self.convert(node, tp, path, f)

    def secret(self, node: yaml.MappingNode, path: str) -> yaml.Node | None:
        """Resolve ``{"$env": VAR}`` / ``{"$file": path}`` into a scalar node at the same place."""
        entries = self.items(node, path)
        if len(entries) != 1 or entries[0][0] not in ("$env", "$file"):
            self.error(
                f'{_where(path)}a secret is a string, {{"$env": VAR}} or {{"$file": path}}, '
                f"found a mapping with keys {', '.join(_q(k) for k, _, _ in entries)}",
                node,
                path,
            )
            return None
        how, _, ref_node = entries[0]
        if not isinstance(ref_node, yaml.ScalarNode) or not ref_node.value:
            self.error(f"{_where(path)}{how} needs a non-empty name", ref_node, path)
            return None
        ref = ref_node.value
        if how == "$env":
            if ref not in self.environ:
                self.error(f"{_where(path)}environment variable {_q(ref)} is not set", ref_node, path)
                return None
            text = self.environ[ref]
        else:
            file_path = Path(ref)
            if not file_path.is_absolute():
                file_path = self.base_dir / file_path
            try:
                text = file_path.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                self.error(f"{_where(path)}cannot read secret file {file_path}: {reason}", ref_node, path)
                return None
        return yaml.ScalarNode(_STR_TAG, text, ref_node.start_mark, ref_node.end_mark, style='"')

    def convert(self, node: yaml.Node, tp: Any, path: str, f: dataclasses.Field[Any] | None) -> Any:
        """Convert ``node`` to ``tp``; errors are recorded and ``_KEEP`` returned."""
        try:
            return self._convert(node, tp, path, f)
        except _TypeProblem as exc:
            self.error(f"{_where(path)}{exc}", node, path or None)
            return _KEEP

    def _convert(self, node: yaml.Node, tp: Any, path: str, f: dataclasses.Field[Any] | None) -> Any:
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            return self.union(node, typing.get_args(tp), path, f)
        if tp is Any or tp is object:
            return _plain_value(node, 0)
        if _is_null(node):
            if tp is type(None):
                return None
            if origin is list or tp is list:
                return []
            if origin is dict or tp is dict:
                return {}
            return _KEEP
        if dataclasses.is_dataclass(tp):
            return self.dataclass(node, tp, path)
        if origin is list or tp is list:
            return self.seq(node, (typing.get_args(tp) or (Any,))[0], path)
        if origin is dict or tp is dict:
            args = typing.get_args(tp) or (str, Any)
            return self.mapping(node, args[1], path)
        if not isinstance(node, yaml.ScalarNode):
            raise _TypeProblem(f"expected {_type_name(tp)}, found {_describe(node)}")
        if origin is Literal:
            return self.literal(node, typing.get_args(tp))
        if f is not None and f.metadata.get("duration"):
            return self.duration(node)
        if tp is str:
            return node.value  # yaml.v3 reads any scalar into a string field, as written
        if tp is bool:
            return _to_bool(node)
        if tp is int:
            return _to_int(node)
        if tp is float:
            return _to_float(node)
        if tp is type(None):
            raise _TypeProblem(f"expected nothing, found {_describe(node)}")
        raise _TypeProblem(f"unsupported field type {tp!r}")

    def union(
        self, node: yaml.Node, args: tuple[Any, ...], path: str, f: dataclasses.Field[Any] | None
    ) -> Any:
        if _is_null(node):
            if type(None) in args:
                return None
            return _KEEP
        candidates = [a for a in args if a is not type(None) and _accepts_kind(a, node)]
        if not candidates:
            names = " or ".join(_type_name(a) for a in args if a is not type(None))
            raise _TypeProblem(f"expected {names}, found {_describe(node)}")
        last: _TypeProblem | None = None
        for candidate in candidates:
            before = len(self.errors)
            try:
                value = self._convert(node, candidate, path, f)
            except _TypeProblem as exc:
                last = exc
                del self.errors[before:]
                continue
            if len(self.errors) > before and candidate is not candidates[-1]:
                del self.errors[before:]  # try the next alternative with a clean slate
                continue
            return value
        assert last is not None
        raise last

    def seq(self, node: yaml.Node, item_tp: Any, path: str) -> list[Any]:
        if not isinstance(node, yaml.SequenceNode):
            raise _TypeProblem(f"expected a list, found {_describe(node)}")
        result = []
        for index, item in enumerate(node.value):
            value = self.convert(item, item_tp, f"{path}[{index}]", None)
            result.append(default_for(item_tp) if value is _KEEP else value)
        return result

    def mapping(self, node: yaml.Node, value_tp: Any, path: str) -> dict[str, Any]:
        if not isinstance(node, yaml.MappingNode):
            raise _TypeProblem(f"expected a mapping, found {_describe(node)}")
        result = {}
        for key, _, value_node in self.items(node, path):
            value = self.convert(value_node, value_tp, _join(path, key), None)
            result[key] = default_for(value_tp) if value is _KEEP else value
        return result

    def literal(self, node: yaml.ScalarNode, options: tuple[Any, ...]) -> Any:
        for option in options:
            try:
                if isinstance(option, bool):
                    value: Any = _to_bool(node)
                elif isinstance(option, int):
                    value = _to_int(node)
                elif isinstance(option, float):
                    value = _to_float(node)
                else:
                    value = node.value
            except _TypeProblem:
                continue
            if value == option and type(value) is type(option):
                return option
        expected = _type_name(Literal[options])  # type: ignore[valid-type]
        raise _TypeProblem(f"expected {expected}, found {_describe(node)}")

    def duration(self, node: yaml.ScalarNode) -> float:
        kind, value = _scalar_kind(node)
        if kind == "int" and value == 0:
            return 0.0
        if kind in ("int", "float"):
            raise _TypeProblem(
                f'expected a duration such as "10s" or "1m30s", found the number {node.value} (add a unit)'
            )
        if kind != "str":
            raise _TypeProblem(f'expected a duration such as "10s" or "1m30s", found {_describe(node)}')
        try:
            return parse_duration(node.value)
        except DurationError as exc:
            raise _TypeProblem(f'expected a duration such as "10s" or "1m30s": {exc}') from exc


def _required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _accepts_kind(tp: Any, node: yaml.Node) -> bool:
    """Whether a union alternative could take this kind of node (scalar / list / mapping)."""
    origin = typing.get_origin(tp)
    if tp is Any or tp is object:
        return True
    if isinstance(node, yaml.SequenceNode):
        return origin is list or tp is list
    if isinstance(node, yaml.MappingNode):
        return origin is dict or tp is dict or dataclasses.is_dataclass(tp)
    return not (origin in (list, dict) or tp in (list, dict) or dataclasses.is_dataclass(tp))


def _is_null(node: yaml.Node) -> bool:
    if not isinstance(node, yaml.ScalarNode):
        return False
    try:
        return _scalar_kind(node)[0] == "null"
    except _TypeProblem:
        return False


def _to_bool(node: yaml.ScalarNode) -> bool:
    kind, value = _scalar_kind(node)
    if kind == "bool":
        return value
    if node.value in _TRUE_11:
        return True
    if node.value in _FALSE_11:
        return False
    hint = " (remove the quotes)" if kind == "str" and node.value in _TRUE | _FALSE else ""
    raise _TypeProblem(f"expected a boolean (true or false), found {_describe(node)}{hint}")


def _to_int(node: yaml.ScalarNode) -> int:
    kind, value = _scalar_kind(node)
    if kind == "int":
        return value
    if kind == "float" and math.isfinite(value) and value == int(value):
        return int(value)
    raise _TypeProblem(f"expected an integer, found {_describe(node)}")


def _to_float(node: yaml.ScalarNode) -> float:
    kind, value = _scalar_kind(node)
    if kind in ("int", "float"):
        return float(value)
    raise _TypeProblem(f"expected a number, found {_describe(node)}")


def _plain_value(node: yaml.Node, depth: int) -> Any:
    """A node as plain Python data (for ``Any`` fields), with yaml.v3's scalar resolution."""
    if depth > 100:
        raise _TypeProblem("the value nests too deeply (a recursive alias?)")
    if isinstance(node, yaml.MappingNode):
        return {k.value: _plain_value(v, depth + 1) for k, v in node.value}
    if isinstance(node, yaml.SequenceNode):
        return [_plain_value(v, depth + 1) for v in node.value]
    kind, value = _scalar_kind(node)
    return value


def _join(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


def _where(path: str) -> str:
    return f"{path}: " if path else ""


# --- loading ------------------------------------------------------------------------------------


def _with_hostname(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    """Fill in HOSTNAME when it is unset or empty, as LiteFS does so ``${HOSTNAME}`` works."""
    if environ is None:
        if not os.environ.get("HOSTNAME"):
            os.environ["HOSTNAME"] = socket.gethostname()
        return os.environ
    if environ.get("HOSTNAME"):
        return environ
    env = dict(environ)
    env["HOSTNAME"] = socket.gethostname()
    return env


def parse_config(
    text: str,
    *,
    path: str | os.PathLike[str] | None = None,
    expand: bool = True,
    environ: Mapping[str, str] | None = None,
    sections: Mapping[str, Any] | None = None,
    check: bool = True,
) -> Config:
    """Build a :class:`Config` from litefs.yml text (``path`` names the file in messages and is the
    base of relative ``$file`` secrets). ``check=False`` skips :func:`validate`.

    ``environ`` is used for expansion and ``$env`` secrets as given (HOSTNAME is not filled in
    here; :func:`load_config` does that).
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    sections = dict(sections or {})
    file = None if path is None else str(path)
    _check_sections(sections)

    if expand:
        text = _expand(text, env, _SECRET_KEYS)
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise ConfigError(f"invalid YAML: {problem}", path=file, line=line) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", path=file) from exc

    base_dir = Path(file).parent if file else Path.cwd()
    converter = _Converter(file, sections, env, base_dir)
    config: Any = _KEEP
    if root is None:
        config = Config()
    else:
        config = converter.convert(root, Config, "", None)
    if converter.errors:
        first = converter.errors[0]
        raise ConfigError(
            first.message, path=first.path, line=first.line, key=first.key, errors=converter.errors
        )
    if config is _KEEP:
        config = Config()

    config.section_types = sections
    config.sections = {
        p: converter.found_sections[p] if p in converter.found_sections else default_for(tp)
        for p, tp in sections.items()
    }
    config.source = file
    config.key_lines = converter.key_lines
    if check:
        validate(config)
    return config


def _check_sections(sections: Mapping[str, Any]) -> None:
    """A plugin section may not shadow a core key."""
    for path in sections:
        parts = path.split(".")
        cls: Any = Config
        for i, part in enumerate(parts):
            if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
                break
            fields = {_yaml_key(f): f for f in _config_fields(cls)}
            if part not in fields:
                break
            if i == len(parts) - 1:
                raise ConfigError(f"a plugin registered the config section {_q(path)}, which is a core key")
            cls = _hints(cls)[fields[part].name]


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    expand: bool = True,
    environ: Mapping[str, str] | None = None,
    sections: Mapping[str, Any] | None = None,
) -> Config:
    """Find (when ``path`` is None), read, expand, parse, convert and validate litefs.yml.

    ``sections`` maps dotted section paths to the types plugins registered for them. HOSTNAME is
    set to the OS hostname when unset or empty: in ``os.environ`` when ``environ`` is None,
    otherwise in a copy used for expansion. Every problem raises :class:`ConfigError`.
    """
    file = find_config_path(path)
    env = _with_hostname(environ)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror or exc}", path=file) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file is not UTF-8 text (byte {exc.start})", path=file) from exc
    return parse_config(text, path=file, expand=expand, environ=env, sections=sections)


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
