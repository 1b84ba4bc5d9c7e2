"""``$VAR`` / ``${...}`` expansion of litefs.yml's raw text, exactly like LiteFS's ``ExpandEnv``.

LiteFS runs Go's ``os.Expand`` over the whole file before parsing it, with a mapping that also
understands ``${A == B}`` / ``${A != B}``. Nothing here knows about YAML.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

__all__ = ["expand_env", "expand_keeping"]

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
    return expand_keeping(text, os.environ if environ is None else environ, frozenset())


def expand_keeping(text: str, env: Mapping[str, str], keep: frozenset[str]) -> str:
    """:func:`expand_env`, except that unbraced names in ``keep`` are left as written.

    The loader keeps ``$env`` and ``$file`` so that the secret references survive expansion.
    """
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
