"""Finding litefs.yml, and turning its text into a checked :class:`~litefs.config.Config`.

:func:`load_config` finds and reads the file, fills in HOSTNAME and hands the text to
:func:`parse_config`, which expands it (:mod:`.expand`), composes the YAML (:mod:`.nodes`),
converts the tree (:mod:`.convert`) and runs :func:`~litefs.config.validate`.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .convert import KEEP, Converter
from .errors import ConfigError
from .expand import expand_keeping
from .model import Config, default_for, type_hints, validate, yaml_fields
from .nodes import Loader, quote

__all__ = ["config_search_paths", "find_config_path", "load_config", "parse_config"]

#: Unbraced names that config loading leaves alone: ``{"$env": VAR}``/``{"$file": path}`` are secret
#: references, not variables (``${env}`` still expands a variable named ``env``).
_SECRET_KEYS = frozenset({"env", "file"})


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
        text = expand_keeping(text, env, _SECRET_KEYS)
    try:
        root = yaml.compose(text, Loader=Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise ConfigError(f"invalid YAML: {problem}", path=file, line=line) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", path=file) from exc

    base_dir = Path(file).parent if file else Path.cwd()
    converter = Converter(file, sections, env, base_dir)
    config: Any = KEEP
    if root is not None:
        config = converter.convert(root, Config, "", None)
    if converter.errors:
        first = converter.errors[0]
        raise ConfigError(
            first.message, path=first.path, line=first.line, key=first.key, errors=converter.errors
        )
    if config is KEEP:
        config = Config()  # an empty file, only comments or a bare null: the defaults

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
            fields = yaml_fields(cls)
            if part not in fields:
                break
            if i == len(parts) - 1:
                raise ConfigError(
                    f"a plugin registered the config section {quote(path)}, which is a core key"
                )
            cls = type_hints(cls)[fields[part].name]


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
