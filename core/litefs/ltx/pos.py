"""Text forms of TXIDs, checksums, positions and LTX file names (ltx.md section 6)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from litefs.ltx.errors import LTXError

_HEX16 = re.compile(r"[0-9a-f]{16}")
_FILENAME = re.compile(r"([0-9a-f]{16})-([0-9a-f]{16})\.ltx")
_U64_MAX = (1 << 64) - 1


def _check_u64(value: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _U64_MAX:
        raise LTXError(f"{what} {value!r} is not an unsigned 64-bit integer")
    return value


def format_txid(txid: int) -> str:
    """16 lowercase hex digits, e.g. ``000000000000000d``."""
    return f"{_check_u64(txid, 'TXID'):016x}"


def parse_txid(text: str) -> int:
    """Inverse of :func:`format_txid`; requires exactly 16 lowercase hex digits."""
    if not isinstance(text, str) or not _HEX16.fullmatch(text):
        raise LTXError(f"invalid TXID {text!r}: want exactly 16 lowercase hex digits")
    return int(text, 16)


format_checksum = format_txid
"""Checksums use the same 16-hex text form as TXIDs."""


def parse_checksum(text: str) -> int:
    """Parse a 16-hex-digit checksum."""
    if not isinstance(text, str) or not _HEX16.fullmatch(text):
        raise LTXError(f"invalid checksum {text!r}: want exactly 16 lowercase hex digits")
    return int(text, 16)


def format_filename(min_txid: int, max_txid: int) -> str:
    """``%016x-%016x.ltx`` of the TXID range."""
    return f"{format_txid(min_txid)}-{format_txid(max_txid)}.ltx"


def parse_filename(name: str) -> tuple[int, int]:
    """``(min_txid, max_txid)`` of an LTX file name (base name only, lowercase hex as LiteFS writes it)."""
    m = _FILENAME.fullmatch(name) if isinstance(name, str) else None
    if m is None:
        raise LTXError(f"invalid LTX file name {name!r}: want <16 hex>-<16 hex>.ltx")
    lo, hi = int(m.group(1), 16), int(m.group(2), 16)
    if lo == 0 or lo > hi:
        raise LTXError(f"invalid LTX file name {name!r}: TXID range {lo}..{hi} is empty or starts at 0")
    return lo, hi


@dataclass(frozen=True)
class Pos:
    """A replication position: the TXID reached and the database checksum after it."""

    txid: int
    post_apply_checksum: int

    def __post_init__(self) -> None:
        _check_u64(self.txid, "TXID")
        _check_u64(self.post_apply_checksum, "checksum")

    def __str__(self) -> str:
        return f"{self.txid:016x}/{self.post_apply_checksum:016x}"

    @classmethod
    def parse(cls, text: str) -> Pos:
        """Parse ``<txid16>/<checksum16>`` (33 characters)."""
        if not isinstance(text, str) or len(text) != 33 or text[16] != "/":
            raise LTXError(f"invalid position {text!r}: want <16 hex>/<16 hex>")
        return cls(parse_txid(text[:16]), parse_checksum(text[17:]))

    @classmethod
    def zero(cls) -> Pos:
        """The position of a database with no transactions yet."""
        return cls(0, 0)

    def is_zero(self) -> bool:
        return self.txid == 0 and self.post_apply_checksum == 0

    def to_json(self) -> dict[str, str]:
        """The LiteFS JSON shape: ``{"TXID": "...", "PostApplyChecksum": "..."}``."""
        return {
            "TXID": format_txid(self.txid),
            "PostApplyChecksum": format_checksum(self.post_apply_checksum),
        }
