"""litefs.yml: finding, expanding, parsing and validating it the way LiteFS v0.5.14 does.

The file is read as text, ``$VAR``/``${...}`` references are expanded (:func:`expand_env`, unless
``-no-expand-env``), the YAML is composed into a node tree (so every value keeps its line), and a
strict converter turns the tree into the dataclasses of :mod:`.model`. LiteFS's rules carry over:

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

The package, one module per job (import from ``litefs.config``; the modules are internal):

* :mod:`.errors`: :class:`ConfigError`;
* :mod:`.expand`: environment expansion of the raw text;
* :mod:`.model`: the dataclasses with their defaults, :func:`default_for`, :func:`dump_yaml`,
  :func:`validate`;
* :mod:`.nodes`: the YAML node tree with yaml.v3's scalar rules;
* :mod:`.convert`: the strict converter from nodes to dataclasses;
* :mod:`.loader`: finding the file, :func:`parse_config` and :func:`load_config`.
"""

from __future__ import annotations

from litefs.durations import format_duration, parse_duration

from .errors import ConfigError
from .expand import expand_env
from .loader import config_search_paths, find_config_path, load_config, parse_config
from .model import (
    MASK,
    Config,
    DataConfig,
    FuseConfig,
    HTTPConfig,
    LeaseConfig,
    LogConfig,
    TracingConfig,
    default_for,
    dump_yaml,
    validate,
)

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
