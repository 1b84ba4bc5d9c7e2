"""The strict converter: a YAML node tree into config dataclasses, collecting every error.

A run (:class:`Converter`) walks the tree with the target type: dataclasses (core sections and
plugin section types), lists, dicts, unions, ``Literal``, ``str``/``bool``/``int``/``float``, Go
duration fields and ``Any``. Keys that are neither fields nor registered plugin sections are
errors with a suggestion; ``secret`` fields may be ``{"$env": VAR}`` or ``{"$file": path}``.
Each problem becomes a :class:`~litefs.config.ConfigError` with the key path and line.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml

from litefs.durations import DurationError, parse_duration

from .errors import ConfigError
from .model import (
    default_for,
    is_dict_type,
    is_list_type,
    is_required,
    is_union_type,
    type_hints,
    yaml_fields,
)
from .nodes import (
    PLAIN_TAG,
    STR_TAG,
    TypeProblem,
    describe,
    is_null,
    line_of,
    plain_value,
    quote,
    scalar_kind,
    to_bool,
    to_float,
    to_int,
)

__all__ = ["KEEP", "Converter"]


class _Keep:
    """Sentinel: no value to set. The YAML value was null, so the field keeps its default (yaml.v3
    behaviour), or it was bad and the error is already recorded."""


KEEP = _Keep()

#: Sections LiteFS has that litefs-py's plugins provide, for a helpful unknown-key message.
_PLUGIN_SECTIONS = {
    "exec": "exec_supervisor",
    "proxy": "proxy",
    "backup": "backup_s3",
    "metrics": "metrics",
    "lease.consul": "lease_consul",
    "lease.etcd": "lease_etcd",
}

#: How a scalar is read into a field (or compared with a ``Literal`` option) of each plain type.
_SCALAR_READERS: dict[type, Callable[[yaml.ScalarNode], Any]] = {
    bool: to_bool,
    int: to_int,
    float: to_float,
    str: lambda node: node.value,  # yaml.v3 reads any scalar into a string field, as written
}

_EXPECTED_DURATION = 'expected a duration such as "10s" or "1m30s"'


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
            quote(str(a)) if isinstance(a, str) else str(a) for a in typing.get_args(tp)
        )
    if is_union_type(tp):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _accepts_kind(tp: Any, node: yaml.Node) -> bool:
    """Whether a union alternative could take this kind of node (scalar / list / mapping)."""
    if tp is Any or tp is object:
        return True
    if isinstance(node, yaml.SequenceNode):
        return is_list_type(tp)
    if isinstance(node, yaml.MappingNode):
        return is_dict_type(tp) or dataclasses.is_dataclass(tp)
    return not (is_list_type(tp) or is_dict_type(tp) or dataclasses.is_dataclass(tp))


def _join(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


def _where(path: str) -> str:
    return f"{path}: " if path else ""


class Converter:
    """One conversion run: knows the file, the registered sections and collects every error.

    ``sections`` maps dotted section paths to the types plugins registered; ``environ`` resolves
    ``$env`` secrets and ``base_dir`` relative ``$file`` secrets. After :meth:`convert`,
    ``errors`` holds every problem found, ``found_sections`` the plugin sections the file had and
    ``key_lines`` the line of each key path.
    """

    def __init__(
        self, file: str | None, sections: Mapping[str, Any], environ: Mapping[str, str], base_dir: Path
    ) -> None:
        self.file = file
        self.sections = dict(sections)
        self.environ = environ
        self.base_dir = base_dir
        self.errors: list[ConfigError] = []
        self.found_sections: dict[str, Any] = {}
        self.key_lines: dict[str, int] = {}

    def error(self, message: str, node: yaml.Node | None, key: str | None) -> None:
        line = line_of(node) if node is not None else None
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
                    f"{_where(path)}keys must be strings, found {describe(key_node)}", key_node, path or None
                )
                continue
            key = key_node.value
            if key == "<<" and key_node.tag == PLAIN_TAG:
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
                first = line_of(explicit[key][0])
                self.error(f'mapping key "{key}" already defined at line {first}', key_node, _join(path, key))
                continue
            explicit[key] = (key_node, value_node)
        result = dict(merged)
        result.update(explicit)
        return [(k, kn, vn) for k, (kn, vn) in result.items()]

    def keyed_items(self, node: yaml.MappingNode, path: str) -> Iterator[tuple[str, yaml.Node, yaml.Node]]:
        """:meth:`items` of a mapping that holds config keys, recording the line of each key path."""
        for key, key_node, value_node in self.items(node, path):
            self.key_lines[_join(path, key)] = line_of(key_node)
            yield key, key_node, value_node

    def dataclass(self, node: yaml.Node, cls: type, path: str) -> Any:
        if not isinstance(node, yaml.MappingNode):
            raise TypeProblem(f"expected a mapping, found {describe(node)}")
        hints = type_hints(cls)
        fields = yaml_fields(cls)
        kwargs: dict[str, Any] = {}
        seen: set[str] = set()
        failed_required = False
        for key, key_node, value_node in self.keyed_items(node, path):
            seen.add(key)
            f = fields.get(key)
            if f is None:
                self.other_key(key, key_node, value_node, path, sorted(fields))
                continue
            before = len(self.errors)
            value = self.field_value(value_node, hints[f.name], f, _join(path, key))
            if value is not KEEP:
                kwargs[f.name] = value
            elif len(self.errors) > before and is_required(f):
                failed_required = True
        missing = [key for key, f in fields.items() if is_required(f) and key not in seen]
        if missing:
            raise TypeProblem(f"missing required key {quote(_join(path, missing[0]))}")
        if failed_required:
            return KEEP  # a required key had a bad value (already reported): nothing to build
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            # A plugin may check its section in __post_init__; its message gets the key and line.
            raise TypeProblem(str(exc)) from exc

    def other_key(
        self, key: str, key_node: yaml.Node, value_node: yaml.Node, parent: str, own_keys: list[str]
    ) -> None:
        """A key of ``parent`` that is not one of its ``own_keys``: a plugin section, a mapping
        holding plugin sections, or an unknown key."""
        key_path = _join(parent, key)
        if key_path in self.sections:
            self.section(value_node, key_path)
        elif self._is_container(key_path):
            self.container(value_node, key_path)
        else:
            self.unknown_key(key, key_node, parent, own_keys + self._children(parent))

    def section(self, node: yaml.Node, path: str) -> None:
        """Convert a plugin-registered section and remember it."""
        tp = self.sections[path]
        before = len(self.errors)
        value = self.convert(node, tp, path, None)
        if len(self.errors) == before:
            self.found_sections[path] = default_for(tp) if value is KEEP else value

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
        if is_null(node):
            return
        if not isinstance(node, yaml.MappingNode):
            self.error(f"{_where(path)}expected a mapping, found {describe(node)}", node, path)
            return
        for key, key_node, value_node in self.keyed_items(node, path):
            self.other_key(key, key_node, value_node, path, [])

    def unknown_key(self, key: str, key_node: yaml.Node, parent: str, known: list[str]) -> None:
        key_path = _join(parent, key)
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        if close:
            message = f"unknown key {quote(key_path)} (did you mean {quote(close[0])}?)"
        elif key_path in _PLUGIN_SECTIONS:
            message = (
                f"unknown key {quote(key_path)}: no installed plugin provides this section "
                f"(LiteFS's {quote(key_path)} comes with the {quote(_PLUGIN_SECTIONS[key_path])} plugin)"
            )
        elif parent == "lease":
            message = (
                f"unknown key {quote(key_path)}: not a lease key, and no installed lease plugin "
                f"provides a {quote(key_path)} section"
            )
        else:
            message = f"unknown key {quote(key_path)}: not a litefs key and no installed plugin provides it"
            if known:
                message += f" (known keys here: {', '.join(known)})"
        self.error(message, key_node, key_path)

    # -- values -----------------------------------------------------------------------------

    def field_value(self, node: yaml.Node, tp: Any, f: dataclasses.Field[Any], path: str) -> Any:
        if f.metadata.get("secret") and isinstance(node, yaml.MappingNode):
            node = self.secret(node, path)
            if node is None:
                return KEEP
        return self.convert(node, tp, path, f)

    def secret(self, node: yaml.MappingNode, path: str) -> yaml.Node | None:
        """Resolve ``{"$env": VAR}`` / ``{"$file": path}`` into a scalar node at the same place."""
        entries = self.items(node, path)
        if len(entries) != 1 or entries[0][0] not in ("$env", "$file"):
            self.error(
                f'{_where(path)}a secret is a string, {{"$env": VAR}} or {{"$file": path}}, '
                f"found a mapping with keys {', '.join(quote(k) for k, _, _ in entries)}",
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
                self.error(f"{_where(path)}environment variable {quote(ref)} is not set", ref_node, path)
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
        return yaml.ScalarNode(STR_TAG, text, ref_node.start_mark, ref_node.end_mark, style='"')

    def convert(self, node: yaml.Node, tp: Any, path: str, f: dataclasses.Field[Any] | None) -> Any:
        """Convert ``node`` to ``tp``; errors are recorded and ``KEEP`` returned."""
        try:
            return self._convert(node, tp, path, f)
        except TypeProblem as exc:
            self.error(f"{_where(path)}{exc}", node, path or None)
            return KEEP

    def _convert(self, node: yaml.Node, tp: Any, path: str, f: dataclasses.Field[Any] | None) -> Any:
        if is_union_type(tp):
            return self.union(node, typing.get_args(tp), path, f)
        if tp is Any or tp is object:
            return plain_value(node)
        if is_null(node):
            if tp is type(None):
                return None
            if is_list_type(tp):
                return []
            if is_dict_type(tp):
                return {}
            return KEEP
        if dataclasses.is_dataclass(tp):
            return self.dataclass(node, tp, path)
        if is_list_type(tp):
            return self.seq(node, (typing.get_args(tp) or (Any,))[0], path)
        if is_dict_type(tp):
            args = typing.get_args(tp) or (str, Any)
            return self.mapping(node, args[1], path)
        if not isinstance(node, yaml.ScalarNode):
            raise TypeProblem(f"expected {_type_name(tp)}, found {describe(node)}")
        if typing.get_origin(tp) is Literal:
            return self.literal(node, typing.get_args(tp))
        if f is not None and f.metadata.get("duration"):
            return self.duration(node)
        reader = _SCALAR_READERS.get(tp)
        if reader is not None:
            return reader(node)
        if tp is type(None):
            raise TypeProblem(f"expected nothing, found {describe(node)}")
        raise TypeProblem(f"unsupported field type {tp!r}")

    def union(
        self, node: yaml.Node, args: tuple[Any, ...], path: str, f: dataclasses.Field[Any] | None
    ) -> Any:
        if is_null(node):
            if type(None) in args:
                return None
            return KEEP
        candidates = [a for a in args if a is not type(None) and _accepts_kind(a, node)]
        if not candidates:
            names = " or ".join(_type_name(a) for a in args if a is not type(None))
            raise TypeProblem(f"expected {names}, found {describe(node)}")
        last: TypeProblem | None = None
        for candidate in candidates:
            before = len(self.errors)
            try:
                value = self._convert(node, candidate, path, f)
            except TypeProblem as exc:
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
            raise TypeProblem(f"expected a list, found {describe(node)}")
        result = []
        for index, item in enumerate(node.value):
            value = self.convert(item, item_tp, f"{path}[{index}]", None)
            result.append(default_for(item_tp) if value is KEEP else value)
        return result

    def mapping(self, node: yaml.Node, value_tp: Any, path: str) -> dict[str, Any]:
        if not isinstance(node, yaml.MappingNode):
            raise TypeProblem(f"expected a mapping, found {describe(node)}")
        result = {}
        for key, _, value_node in self.items(node, path):
            value = self.convert(value_node, value_tp, _join(path, key), None)
            result[key] = default_for(value_tp) if value is KEEP else value
        return result

    def literal(self, node: yaml.ScalarNode, options: tuple[Any, ...]) -> Any:
        for option in options:
            # Read the scalar as the option's own type, so 1 matches Literal[1] and "1" Literal["1"].
            reader = _SCALAR_READERS.get(type(option), _SCALAR_READERS[str])
            try:
                value = reader(node)
            except TypeProblem:
                continue
            if value == option and type(value) is type(option):
                return option
        expected = _type_name(Literal[options])  # type: ignore[valid-type]
        raise TypeProblem(f"expected {expected}, found {describe(node)}")

    def duration(self, node: yaml.ScalarNode) -> float:
        kind, value = scalar_kind(node)
        if kind == "int" and value == 0:
            return 0.0
        if kind in ("int", "float"):
            raise TypeProblem(f"{_EXPECTED_DURATION}, found the number {node.value} (add a unit)")
        if kind != "str":
            raise TypeProblem(f"{_EXPECTED_DURATION}, found {describe(node)}")
        try:
            return parse_duration(node.value)
        except DurationError as exc:
            raise TypeProblem(f"{_EXPECTED_DURATION}: {exc}") from exc
