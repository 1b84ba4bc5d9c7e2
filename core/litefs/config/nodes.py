"""The YAML node tree of litefs.yml, with Go yaml.v3's scalar rules instead of PyYAML's.

PyYAML composes the file into nodes (so every value keeps its line); :class:`Loader` stops it from
resolving plain scalars with YAML 1.1 rules, and :func:`scalar_kind` resolves them the way
yaml.v3 does when LiteFS decodes into typed fields. The ``to_*`` readers and :func:`describe`
raise and word :class:`TypeProblem`, which the converter turns into a
:class:`~litefs.config.ConfigError` with the key path and line.
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml

__all__ = [
    "PLAIN_TAG",
    "STR_TAG",
    "Loader",
    "TypeProblem",
    "describe",
    "is_null",
    "line_of",
    "plain_value",
    "quote",
    "scalar_kind",
    "to_bool",
    "to_float",
    "to_int",
]

#: The tag :class:`Loader` gives every plain (unquoted, untagged) scalar.
PLAIN_TAG = "!litefs/plain"
STR_TAG = "tag:yaml.org,2002:str"
_TAG_KINDS = {
    STR_TAG: "str",
    "tag:yaml.org,2002:bool": "bool",
    "tag:yaml.org,2002:int": "int",
    "tag:yaml.org,2002:float": "float",
    "tag:yaml.org,2002:null": "null",
}

_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """Composes nodes without PyYAML's YAML 1.1 scalar resolution: plain scalars are marked as such
    and resolved later with yaml.v3's rules (PyYAML would read ``on``, ``0777`` and ``1:30`` as 1.1)."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is yaml.ScalarNode and implicit[0]:
            return PLAIN_TAG
        return super().resolve(kind, value, implicit)


class TypeProblem(Exception):
    """Raised inside the converter; turned into a ConfigError with the key path and line."""


def line_of(node: yaml.Node) -> int:
    """The 1-based line where ``node`` starts."""
    return node.start_mark.line + 1


def quote(text: str) -> str:
    """``text`` in double quotes, as messages show keys and strings."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- yaml.v3 scalar resolution ------------------------------------------------------------------

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


def scalar_kind(node: yaml.ScalarNode) -> tuple[str, Any]:
    """(kind, value) of a scalar; quoted or ``!!str`` scalars are strings."""
    if node.tag == PLAIN_TAG:
        return _resolve_plain(node.value)
    kind = _TAG_KINDS.get(node.tag)
    if kind == "str" or kind is None:
        return "str", node.value
    resolved_kind, value = _resolve_plain(node.value) if node.value else ("null", None)
    if resolved_kind == kind or (kind == "float" and resolved_kind == "int"):
        return kind, float(value) if kind == "float" else value
    raise TypeProblem(f"cannot read {node.value!r} as {node.tag.rsplit(':', 1)[-1]}")


def is_null(node: yaml.Node) -> bool:
    """Whether ``node`` is a null scalar (``~``, ``null``, nothing at all)."""
    if not isinstance(node, yaml.ScalarNode):
        return False
    try:
        return scalar_kind(node)[0] == "null"
    except TypeProblem:
        return False


def describe(node: yaml.Node) -> str:
    """How a node looks to a user, for 'found ...' in messages."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    try:
        kind, _ = scalar_kind(node)
    except TypeProblem:
        kind = "str"
    if kind == "null":
        return "nothing (null)"
    if kind == "str":
        quoted = "quoted " if node.tag != PLAIN_TAG else ""
        return f"the {quoted}string {quote(node.value)}"
    names = {"bool": "the boolean", "int": "the integer", "float": "the number", "timestamp": "the date"}
    return f"{names[kind]} {node.value}"


# --- typed readers ------------------------------------------------------------------------------


def to_bool(node: yaml.ScalarNode) -> bool:
    """A scalar read into a ``bool`` field (yaml.v3 also takes ``yes``/``on``/``no``/``off`` there)."""
    kind, value = scalar_kind(node)
    if kind == "bool":
        return value
    if node.value in _TRUE_11:
        return True
    if node.value in _FALSE_11:
        return False
    hint = " (remove the quotes)" if kind == "str" and node.value in _TRUE | _FALSE else ""
    raise TypeProblem(f"expected a boolean (true or false), found {describe(node)}{hint}")


def to_int(node: yaml.ScalarNode) -> int:
    """A scalar read into an ``int`` field; a float is accepted only when it is whole."""
    kind, value = scalar_kind(node)
    if kind == "int":
        return value
    if kind == "float" and math.isfinite(value) and value == int(value):
        return int(value)
    raise TypeProblem(f"expected an integer, found {describe(node)}")


def to_float(node: yaml.ScalarNode) -> float:
    """A scalar read into a ``float`` field."""
    kind, value = scalar_kind(node)
    if kind in ("int", "float"):
        return float(value)
    raise TypeProblem(f"expected a number, found {describe(node)}")


def plain_value(node: yaml.Node, depth: int = 0) -> Any:
    """A node as plain Python data (for ``Any`` fields), with yaml.v3's scalar resolution."""
    if depth > 100:
        raise TypeProblem("the value nests too deeply (a recursive alias?)")
    if isinstance(node, yaml.MappingNode):
        return {k.value: plain_value(v, depth + 1) for k, v in node.value}
    if isinstance(node, yaml.SequenceNode):
        return [plain_value(v, depth + 1) for v in node.value]
    _, value = scalar_kind(node)
    return value
