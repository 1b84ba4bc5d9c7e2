"""Go-style durations (``10s``, ``1m30s``, ``500ms``), as LiteFS's litefs.yml spells them.

:func:`parse_duration` accepts exactly what Go's ``time.ParseDuration`` accepts and returns seconds
as a float; :func:`format_duration` prints seconds the way Go's ``time.Duration.String`` does, so
``litefs config show`` writes durations LiteFS itself would read back.
"""

from __future__ import annotations

__all__ = ["DurationError", "format_duration", "parse_duration"]

_NS = 1
_US = 1_000
_MS = 1_000_000
_S = 1_000_000_000
_M = 60 * _S
_H = 60 * _M

# Both micro signs are accepted by Go: U+00B5 (MICRO SIGN) and U+03BC (GREEK SMALL LETTER MU).
_UNITS = {
    "ns": _NS,
    "us": _US,
    "\u00b5s": _US,
    "\u03bcs": _US,
    "ms": _MS,
    "s": _S,
    "m": _M,
    "h": _H,
}

_INT64_MAX = (1 << 63) - 1


class DurationError(ValueError):
    """The text is not a Go duration; the message quotes it the way Go does."""


def _go_quote(text: str) -> str:
    """Quote roughly like Go's strconv.Quote, enough for error messages."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    return f'"{escaped}"'


def parse_duration_ns(text: str) -> int:
    """Parse a Go duration string into integer nanoseconds (see :func:`parse_duration`)."""
    if not isinstance(text, str):
        raise DurationError(f"time: invalid duration {_go_quote(str(text))}")
    orig = text
    s = text
    negative = False
    if s and s[0] in "+-":
        negative = s[0] == "-"
        s = s[1:]
    if s == "0":  # the one number that needs no unit
        return 0
    if s == "":
        raise DurationError(f"time: invalid duration {_go_quote(orig)}")

    total = 0
    while s:
        # The number: digits, optionally a fraction; at least one digit overall.
        i = 0
        while i < len(s) and s[i].isascii() and s[i].isdigit():
            i += 1
        whole_digits = s[:i]
        s = s[i:]
        frac_digits = ""
        if s.startswith("."):
            s = s[1:]
            i = 0
            while i < len(s) and s[i].isascii() and s[i].isdigit():
                i += 1
            frac_digits = s[:i]
            s = s[i:]
        if not whole_digits and not frac_digits:
            raise DurationError(f"time: invalid duration {_go_quote(orig)}")

        # The unit: everything up to the next digit or '.'.
        i = 0
        while i < len(s) and s[i] != "." and not (s[i].isascii() and s[i].isdigit()):
            i += 1
        unit_text = s[:i]
        s = s[i:]
        if not unit_text:
            raise DurationError(f"time: missing unit in duration {_go_quote(orig)}")
        unit = _UNITS.get(unit_text)
        if unit is None:
            raise DurationError(f"time: unknown unit {_go_quote(unit_text)} in duration {_go_quote(orig)}")

        whole = int(whole_digits) if whole_digits else 0
        if whole > _INT64_MAX // unit:
            raise DurationError(f"time: invalid duration {_go_quote(orig)}")
        value = whole * unit
        if frac_digits:
            # Go truncates the fractional part toward zero at nanosecond precision.
            value += int(frac_digits) * unit // (10 ** len(frac_digits))
        total += value
        if total > _INT64_MAX:
            raise DurationError(f"time: invalid duration {_go_quote(orig)}")
    return -total if negative else total


def parse_duration(text: str) -> float:
    """Parse a Go duration (``"10s"``, ``"1m30s"``, ``"1.5h"``, ``"500ms"``, ``"-2us"``, ``"0"``).

    Units: ``ns``, ``us`` (or ``µs``/``μs``), ``ms``, ``s``, ``m``, ``h``. Every number needs a unit
    except a lone ``0``. Returns seconds; raises :class:`DurationError` with Go's message
    (``time: missing unit in duration "10"``) otherwise.
    """
    return parse_duration_ns(text) / _S


def _fmt_frac(value: int, prec: int) -> tuple[str, int]:
    """Split off ``prec`` decimal digits of ``value``; trailing zeros (and a bare dot) are dropped."""
    digits = []
    printed = False
    for _ in range(prec):
        digit = value % 10
        printed = printed or digit != 0
        if printed:
            digits.append(str(digit))
        value //= 10
    text = "." + "".join(reversed(digits)) if printed else ""
    return text, value


def format_duration_ns(ns: int) -> str:
    """Format integer nanoseconds like Go's ``time.Duration.String``."""
    negative = ns < 0
    u = -ns if negative else ns
    if u < _S:
        if u == 0:
            return "0s"
        if u < _US:
            text = f"{u}ns"
        elif u < _MS:
            frac, whole = _fmt_frac(u, 3)
            text = f"{whole}{frac}\u00b5s"
        else:
            frac, whole = _fmt_frac(u, 6)
            text = f"{whole}{frac}ms"
    else:
        frac, secs = _fmt_frac(u, 9)
        text = f"{secs % 60}{frac}s"
        mins = secs // 60
        if mins > 0:
            text = f"{mins % 60}m{text}"
            hours = mins // 60
            if hours > 0:
                text = f"{hours}h{text}"
    return f"-{text}" if negative else text


def format_duration(seconds: float) -> str:
    """Format seconds the way Go prints a ``time.Duration``: ``10s``, ``1m0s``, ``1h30m0s``, ``500ms``."""
    return format_duration_ns(round(seconds * _S))
