"""The LiteFS v0.5.14 replication wire format, sans-IO.

Two things travel over `POST /stream`:

* the request body, a **position map**: u32 count, then per database (sorted by name) u32 name length,
  the UTF-8 name, u64 TXID, u64 post-apply checksum -- all big-endian;
* the response body, a sequence of **frames**: u32 type, then a type-specific payload. An LTX frame's
  header (u64 size, always 0; u32 name length; name) is followed by the LTX file as chunks of
  u16 length + bytes, ended by a zero-length chunk.

Nothing here does I/O: encoders return bytes, and `FrameParser` turns bytes fed in any split into
events. Malformed input raises ProtocolError naming the byte offset in the stream.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, NoReturn

from litefs.ltx import Pos

MAX_NAME_SIZE = 1024
"""Longest database name or lease ID accepted, in bytes (LiteFS has no limit; garbage must not stall us)."""
MAX_CHUNK_SIZE = 0xFFFF
CHUNK_END = b"\x00\x00"

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_I64 = struct.Struct(">q")
_POS = struct.Struct(">QQ")


class ProtocolError(ValueError):
    """Bytes that do not follow the replication wire format; the message names the byte offset."""


class FrameType(IntEnum):
    """The u32 type word at the start of every stream frame."""

    LTX = 1
    READY = 2
    END = 3
    DROPDB = 4
    HANDOFF = 5
    HWM = 6
    HEARTBEAT = 7


# -- position map ---------------------------------------------------------------------------------


def _encode_name(name: str, what: str = "database name") -> bytes:
    if not isinstance(name, str) or not name:
        raise ProtocolError(f"{what} {name!r} must be a non-empty string")
    raw = name.encode("utf-8")
    if len(raw) > MAX_NAME_SIZE:
        raise ProtocolError(f"{what} is {len(raw)} bytes, more than {MAX_NAME_SIZE}")
    return _U32.pack(len(raw)) + raw


def encode_pos_map(positions: Mapping[str, Pos]) -> bytes:
    """Encode the body of a `/stream` request: every database's position, sorted by name."""
    parts = [_U32.pack(len(positions))]
    for name in sorted(positions):
        pos = positions[name]
        parts.append(_encode_name(name))
        parts.append(_POS.pack(pos.txid, pos.post_apply_checksum))
    return b"".join(parts)


def _decode_name(raw: bytes, offset: int, what: str = "database name") -> str:
    if not raw:
        raise ProtocolError(f"empty {what} at offset {offset}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProtocolError(f"{what} at offset {offset} is not valid UTF-8: {raw[:32]!r}") from e


def decode_pos_map(data: bytes) -> dict[str, Pos]:
    """Decode a position map strictly: exact lengths, UTF-8 names, no duplicates, no trailing bytes."""
    data = bytes(data)
    if len(data) < 4:
        raise ProtocolError(f"position map is {len(data)} bytes, need at least 4 for the count")
    (count,) = _U32.unpack_from(data, 0)
    offset = 4
    out: dict[str, Pos] = {}
    for i in range(count):
        if len(data) < offset + 4:
            raise ProtocolError(f"position map entry {i} truncated at offset {offset}: missing name length")
        (name_len,) = _U32.unpack_from(data, offset)
        if name_len > MAX_NAME_SIZE:
            raise ProtocolError(f"database name length {name_len} at offset {offset} exceeds {MAX_NAME_SIZE}")
        offset += 4
        end = offset + name_len + _POS.size
        if len(data) < end:
            raise ProtocolError(
                f"position map entry {i} truncated at offset {offset}: need {end - offset} bytes"
            )
        name = _decode_name(data[offset : offset + name_len], offset)
        if name in out:
            raise ProtocolError(f"duplicate database name {name!r} at offset {offset}")
        txid, checksum = _POS.unpack_from(data, offset + name_len)
        out[name] = Pos(txid, checksum)
        offset = end
    if offset != len(data):
        raise ProtocolError(f"{len(data) - offset} trailing bytes after position map at offset {offset}")
    return out


# -- frames ---------------------------------------------------------------------------------------


def encode_chunk_parts(parts: list[bytes | bytearray | memoryview]) -> bytes:
    """:func:`encode_chunk` of the concatenation of ``parts``, without concatenating them first:
    the join below is the only copy."""
    remaining = sum(len(p) for p in parts)
    out: list[bytes | memoryview] = []
    room = 0  # what the current chunk can still take
    for part in parts:
        view = memoryview(part)
        while view:
            if not room:
                room = min(MAX_CHUNK_SIZE, remaining)
                out.append(_U16.pack(room))
            piece = view[:room]
            out.append(piece)
            n = len(piece)
            room -= n
            remaining -= n
            view = view[n:]
    return b"".join(out)


def encode_chunk(data: bytes | bytearray | memoryview) -> bytes:
    """Encode data as chunks of at most 65535 bytes (without the end marker; empty data gives b"")."""
    return encode_chunk_parts([data])


@dataclass(frozen=True, slots=True)
class LTXFrameStart:
    """Start of an LTX frame; the LTX file follows as LTXChunk events and ends with LTXFrameEnd.

    `size` is carried for completeness: LiteFS always writes 0 and nobody reads it.
    """

    name: str
    size: int = 0
    type: ClassVar[FrameType] = FrameType.LTX

    def encode(self) -> bytes:
        """The frame header only; send encode_chunk(file) and CHUNK_END after it."""
        return _U32.pack(self.type) + _U64.pack(self.size) + _encode_name(self.name)


@dataclass(frozen=True, slots=True)
class LTXChunk:
    """One wire chunk of the LTX file (never empty).

    From :class:`FrameParser`, ``data`` may be a read-only memoryview into the received bytes (no
    copy); it stays valid as long as it is referenced.
    """

    data: bytes | memoryview

    def encode(self) -> bytes:
        return encode_chunk(self.data)


@dataclass(frozen=True, slots=True)
class LTXFrameEnd:
    """The zero-length chunk closing an LTX frame: the file is complete."""

    def encode(self) -> bytes:
        return CHUNK_END


@dataclass(frozen=True, slots=True)
class ReadyFrame:
    """The primary finished the first catch-up pass over every database."""

    type: ClassVar[FrameType] = FrameType.READY

    def encode(self) -> bytes:
        return _U32.pack(self.type)


@dataclass(frozen=True, slots=True)
class EndFrame:
    """Clean end of the stream."""

    type: ClassVar[FrameType] = FrameType.END

    def encode(self) -> bytes:
        return _U32.pack(self.type)


@dataclass(frozen=True, slots=True)
class DropDBFrame:
    """Deprecated: the primary lacks a database the replica listed. LiteFS replicas ignore it."""

    name: str
    type: ClassVar[FrameType] = FrameType.DROPDB

    def encode(self) -> bytes:
        return _U32.pack(self.type) + _encode_name(self.name)


@dataclass(frozen=True, slots=True)
class HandoffFrame:
    """The primary hands its lease to this replica; the stream ends after it."""

    lease_id: str
    type: ClassVar[FrameType] = FrameType.HANDOFF

    def encode(self) -> bytes:
        return _U32.pack(self.type) + _encode_name(self.lease_id, "lease ID")


@dataclass(frozen=True, slots=True)
class HWMFrame:
    """High-water mark: the TXID of the database that is durable in the backup service."""

    name: str
    txid: int
    type: ClassVar[FrameType] = FrameType.HWM

    def encode(self) -> bytes:
        return _U32.pack(self.type) + _U64.pack(self.txid) + _encode_name(self.name)


@dataclass(frozen=True, slots=True)
class HeartbeatFrame:
    """The primary's wall clock in milliseconds (signed)."""

    timestamp_ms: int
    type: ClassVar[FrameType] = FrameType.HEARTBEAT

    def encode(self) -> bytes:
        return _U32.pack(self.type) + _I64.pack(self.timestamp_ms)


LTXFrame = LTXFrameStart
"""Alias: the frame object for type LTX is its start event."""

Event = (
    LTXFrameStart
    | LTXChunk
    | LTXFrameEnd
    | ReadyFrame
    | EndFrame
    | DropDBFrame
    | HandoffFrame
    | HWMFrame
    | HeartbeatFrame
)


def encode_ltx_frame(name: str, ltx: bytes, chunk_size: int = 32768) -> bytes:
    """A whole LTX frame: header, the file in chunks of chunk_size (LiteFS copies 32 KiB), end marker."""
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise ProtocolError(f"chunk size {chunk_size} is not in 1..{MAX_CHUNK_SIZE}")
    ltx = bytes(ltx)
    parts = [LTXFrameStart(name).encode()]
    for start in range(0, len(ltx), chunk_size):
        parts.append(encode_chunk(ltx[start : start + chunk_size]))
    parts.append(CHUNK_END)
    return b"".join(parts)


# -- incremental parser ---------------------------------------------------------------------------

_FRAMES = 0  # expecting a frame type word
_CHUNKS = 1  # inside an LTX frame, expecting a chunk length
_ENDED = 2  # after END: nothing more may come


class FrameParser:
    """Incremental parser for the `/stream` response body.

    `feed()` bytes as they arrive (split anywhere), then iterate to get every event that is complete;
    iteration stops when more data is needed. LTX files come out as one LTXChunk per wire chunk (at most
    65535 bytes, so memory stays bounded). The first malformed byte raises ProtocolError naming its
    stream offset, and the parser stays failed. At end of input call `close()`, which raises if the
    stream stopped in the middle of a frame.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._base = 0  # stream offset of self._buf[0] (or of self._view[self._vpos])
        self._state = _FRAMES
        self._error: ProtocolError | None = None
        # The last fed bytes, while nothing else is buffered: whole chunks are cut out of them as
        # memoryviews instead of being copied into and out of _buf (a snapshot is ~1 GB of chunks).
        self._view: memoryview | None = None
        self._vpos = 0

    @property
    def offset(self) -> int:
        """Stream offset of the next unparsed byte."""
        return self._base

    @property
    def at_frame_boundary(self) -> bool:
        """True when no partial frame is buffered and no LTX file is open."""
        self._spill()
        return self._state != _CHUNKS and not self._buf

    @property
    def ended(self) -> bool:
        """True once an END frame was parsed."""
        return self._state == _ENDED

    def feed(self, data: bytes) -> None:
        """Add received bytes (kept by reference when nothing is buffered: do not modify them)."""
        if self._error is not None:
            raise self._error
        self._spill()
        if data:
            # Parsed in place; whatever is left unparsed is copied into _buf (see _spill).
            self._view, self._vpos = memoryview(data).cast("B"), 0

    def _spill(self) -> None:
        """Move what is left of the fed view into _buf (a partial chunk or frame, or a frame)."""
        view = self._view
        if view is not None:
            self._view = None
            if self._vpos < len(view):
                self._buf += view[self._vpos :]

    def _top_up(self) -> None:
        """_buf holds the start of a chunk: move from the view just the bytes that complete it."""
        view = self._view
        assert view is not None
        buf = self._buf
        while True:
            want = 2 if len(buf) < 2 else 2 + ((buf[0] << 8) | buf[1])
            take = min(want - len(buf), len(view) - self._vpos)
            if take <= 0:
                break
            buf += view[self._vpos : self._vpos + take]
            self._vpos += take
        if self._vpos >= len(view):
            self._view = None

    def close(self) -> None:
        """Declare end of input; raise ProtocolError if a frame or LTX file was cut off.

        Call it after draining the events: bytes still buffered then are an incomplete frame.
        """
        if self._error is not None:
            raise self._error
        self._spill()
        if self._state == _ENDED and self._buf:
            self._fail(f"data after END frame at offset {self._base}")
        if self._state == _CHUNKS:
            self._fail(f"stream ended inside an LTX file at offset {self._base + len(self._buf)}")
        if self._buf:
            self._fail(f"stream ended inside a frame header at offset {self._base}")

    def __iter__(self) -> Iterator[Event]:
        while (event := self.next_event()) is not None:
            yield event

    def next_event(self) -> Event | None:
        """Return the next complete event, or None if more data is needed."""
        if self._error is not None:
            raise self._error
        view = self._view
        if view is not None:
            if self._vpos >= len(view):
                self._view = None
            elif self._state != _CHUNKS:
                if self._buf or self._state == _ENDED:
                    self._spill()  # a frame begun in _buf is parsed there; after END, all is wrong
            elif self._buf:
                self._top_up()  # complete the chunk begun in _buf, then go on in the view
        if self._state == _CHUNKS:
            return self._next_chunk()
        if self._state == _ENDED:
            if self._buf:
                self._fail(f"data after END frame at offset {self._base}")
            return None
        return self._next_frame()

    def _fail(self, message: str) -> NoReturn:
        self._error = ProtocolError(message)
        raise self._error

    def _consume(self, n: int) -> bytes:
        with memoryview(self._buf) as view:  # one copy (a slice of the bytearray would be two)
            out = bytes(view[:n])
        del self._buf[:n]
        self._base += n
        return out

    def _next_chunk(self) -> Event | None:
        return self._next_in(self._parse_chunk)

    def _parse_chunk(self, buf: bytearray | memoryview) -> Event | None:
        """The chunk at the start of ``buf``, consumed (from the view: a view, no copy); None if cut off."""
        if len(buf) < 2:
            return None
        (n,) = _U16.unpack_from(buf, 0)
        if n == 0:
            self._advance(buf, 2)
            self._state = _FRAMES
            return LTXFrameEnd()
        if len(buf) < 2 + n:
            return None
        if buf is self._buf:
            self._consume(2)
            return LTXChunk(self._consume(n))
        chunk = LTXChunk(buf[2 : 2 + n])
        self._advance(buf, 2 + n)
        return chunk

    def _next_in(self, parse: Callable[[bytearray | memoryview], Event | None]) -> Event | None:
        """``parse`` the rest of the fed view while nothing is buffered, else _buf."""
        if self._view is not None and not self._buf:
            event = parse(self._view[self._vpos :])
            if event is None:
                self._spill()  # cut off: wait for the rest in _buf
            return event
        return parse(self._buf)

    def _advance(self, buf: bytearray | memoryview, n: int) -> None:
        """Consume ``n`` bytes of ``buf`` (_buf, or the rest of the view)."""
        if buf is self._buf:
            self._consume(n)
        else:
            self._vpos += n
            self._base += n

    def _name_at(self, buf: bytearray | memoryview, at: int, what: str) -> tuple[str, int] | None:
        """Validate the u32 length + name at index `at` of `buf`; (name, end index) or None if short.

        The length is checked as soon as its 4 bytes are here, so garbage fails without waiting for data.
        """
        if len(buf) < at + 4:
            return None
        (n,) = _U32.unpack_from(buf, at)
        if n > MAX_NAME_SIZE:
            self._fail(f"{what} length {n} at offset {self._base + at} exceeds {MAX_NAME_SIZE}")
        if len(buf) < at + 4 + n:
            return None
        return _decode_name(bytes(buf[at + 4 : at + 4 + n]), self._base + at + 4, what), at + 4 + n

    def _next_frame(self) -> Event | None:
        return self._next_in(self._parse_frame)

    def _parse_frame(self, buf: bytearray | memoryview) -> Event | None:
        """The frame at the start of ``buf`` (_buf, or the rest of the view), consumed; None if cut off."""
        if len(buf) < 4:
            return None
        (raw_type,) = _U32.unpack_from(buf, 0)
        try:
            ftype = FrameType(raw_type)
        except ValueError:
            self._fail(f"unknown frame type {raw_type:#x} ({bytes(buf[:4])!r}) at offset {self._base}")
        event: Event
        if ftype is FrameType.READY:
            event, end = ReadyFrame(), 4
        elif ftype is FrameType.END:
            event, end = EndFrame(), 4
        elif ftype is FrameType.HEARTBEAT:
            if len(buf) < 12:
                return None
            event, end = HeartbeatFrame(_I64.unpack_from(buf, 4)[0]), 12
        elif ftype is FrameType.LTX:
            if len(buf) < 12 or (got := self._name_at(buf, 12, "database name")) is None:
                return None
            event, end = LTXFrameStart(got[0], _U64.unpack_from(buf, 4)[0]), got[1]
        elif ftype is FrameType.HWM:
            if len(buf) < 12 or (got := self._name_at(buf, 12, "database name")) is None:
                return None
            event, end = HWMFrame(got[0], _U64.unpack_from(buf, 4)[0]), got[1]
        elif ftype is FrameType.DROPDB:
            if (got := self._name_at(buf, 4, "database name")) is None:
                return None
            event, end = DropDBFrame(got[0]), got[1]
        else:  # HANDOFF
            if (got := self._name_at(buf, 4, "lease ID")) is None:
                return None
            event, end = HandoffFrame(got[0]), got[1]
        self._advance(buf, end)
        if ftype is FrameType.LTX:
            self._state = _CHUNKS
        elif ftype is FrameType.END:
            self._state = _ENDED
        return event
