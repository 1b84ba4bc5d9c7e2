"""Make the replica's h2c stream client fast enough for snapshots.

The replica follows the primary over cleartext HTTP/2 (as LiteFS's Go client does) with httpx/httpcore
and the pure-Python ``h2`` stack. Out of the box that moved a snapshot at about 25 MB/s on loopback,
for two reasons measured here (``bench/replication_bench.py``):

* **16 KiB DATA frames.** httpcore never raises ``SETTINGS_MAX_FRAME_SIZE`` from its 16 KiB default,
  so the primary cuts every MiB into 64 frames, and each frame costs a trip through hypercorn's send
  task, a socket write, and on this side h2's frame parser and httpcore's per-event bookkeeping.
* **A hex dump of every received frame.** ``h2`` computes ``repr(frame)`` for a trace log line before
  the (no-op) logger sees it, and hyperframe's repr hex-encodes the *whole* payload to show its first
  20 hex digits: two extra passes over every byte received.

A third, smaller cost: h2 copies each DATA frame's payload twice on the way out of its receive
buffer (a slice of the bytearray, then ``tobytes()`` of a view of that slice); the patched
``FrameBuffer.__next__`` parses complete DATA frames from a view of the buffer itself (one copy).

:func:`install` fixes all three, within these limits:

* the frame size is raised only for requests that ask for it, with the request extension
  :data:`MAX_FRAME_EXTENSION` (the replica's ``/stream`` request); other httpx clients of the process
  keep httpcore's behaviour. The larger ``SETTINGS_MAX_FRAME_SIZE`` is sent as a SETTINGS update right
  after the connection preface (any HTTP/2 server honours it or ignores it: LiteFS's Go primary sends
  what it likes up to that size), and reads from the socket grow to the same size;
* the repr gives exactly the same text as before, from the first 10 bytes only (a DATA frame's
  repr no longer serializes, that is copies, its whole payload first).

Both patches check that the library internals they rely on exist; otherwise nothing is patched and
the client just stays slower.
"""

from __future__ import annotations

import binascii
import logging
from typing import Any

log = logging.getLogger("litefs.replication")

#: httpx request extension: the largest DATA frame (bytes) this connection accepts from the server.
MAX_FRAME_EXTENSION = "litefs_h2_max_frame_size"
#: What the replica asks for: a snapshot is sent in ~1 MiB pieces, which with their 2-byte chunk
#: headers must fit one frame (else each piece goes out as a full frame and a 34-byte one, and
#: hypercorn copies the first out of its buffer instead of handing the buffer over).
STREAM_MAX_FRAME_SIZE = (1 << 20) + (64 << 10)
#: HTTP/2's largest allowed SETTINGS_MAX_FRAME_SIZE (RFC 9113 6.5.2).
_FRAME_SIZE_LIMIT = (1 << 24) - 1

_installed = False


def _short_raw_data_repr(data: Any) -> str:
    """hyperframe's ``_raw_data_repr`` without hex-encoding more than it shows (same output)."""
    if not data:
        return "None"
    r = binascii.hexlify(bytes(data[:11])).decode("ascii")
    if len(r) > 20:
        r = r[:20] + "..."
    return "<hex:" + r + ">"


def _data_body_repr(self: Any) -> str:
    """``DataFrame``'s body repr from its first bytes only; the stock one serializes (copies) the
    whole payload first."""
    head = self.serialize_padding_data() + bytes(self.data[:11])
    return _short_raw_data_repr((head + b"\0" * self.pad_length)[:11])


def _patch_frame_repr() -> bool:
    try:
        import hyperframe.frame as frame
    except ImportError:
        return False
    if not callable(getattr(frame, "_raw_data_repr", None)):
        return False
    frame._raw_data_repr = _short_raw_data_repr
    data_frame = getattr(frame, "DataFrame", None)
    if data_frame is not None and callable(getattr(data_frame, "_body_repr", None)):
        data_frame._body_repr = _data_body_repr
    return True


def _patch_httpcore() -> bool:
    try:
        import h2.settings
        from httpcore._async.http2 import AsyncHTTP2Connection
    except ImportError:
        return False
    orig = getattr(AsyncHTTP2Connection, "_send_connection_init", None)
    if orig is None or getattr(orig, "_litefs_tuned", False):
        return orig is not None

    async def _send_connection_init(self: Any, request: Any) -> None:
        await orig(self, request)
        size = (getattr(request, "extensions", None) or {}).get(MAX_FRAME_EXTENSION)
        state = getattr(self, "_h2_state", None)
        if not size or state is None or not hasattr(self, "_write_outgoing_data"):
            return
        size = max(16384, min(int(size), _FRAME_SIZE_LIMIT))
        state.update_settings({h2.settings.SettingCodes.MAX_FRAME_SIZE: size})
        # Accept the larger frames at once: h2 would only from the server's SETTINGS ACK on, and it
        # applies that ACK too late when larger frames follow it in the same read (the frame buffer's
        # limit is set once per read). Accepting more than advertised is always allowed.
        state.max_inbound_frame_size = size
        # One socket read can take a whole frame (httpcore reads 64 KiB at a time).
        self.READ_NUM_BYTES = max(getattr(self, "READ_NUM_BYTES", 0), size)
        await self._write_outgoing_data(request)

    _send_connection_init._litefs_tuned = True  # type: ignore[attr-defined]
    AsyncHTTP2Connection._send_connection_init = _send_connection_init  # type: ignore[method-assign]
    return True


def _patch_frame_buffer() -> bool:
    """Parse DATA frames straight from h2's receive buffer (one copy of the payload, not two)."""
    try:
        from h2 import frame_buffer
        from hyperframe.frame import Frame
    except ImportError:
        return False
    cls = getattr(frame_buffer, "FrameBuffer", None)
    orig = getattr(cls, "__next__", None)
    if cls is None or orig is None:
        return False
    if getattr(orig, "_litefs_tuned", False):
        return True
    if not all(hasattr(cls, name) for name in ("_validate_frame_length", "_update_header_buffer")):
        return False

    def __next__(self: Any) -> Any:
        data = getattr(self, "_data", None)
        # Only a complete DATA frame (type 0) in a bytearray buffer; everything else the stock way.
        if not isinstance(data, bytearray) or len(data) < 9 or data[3] != 0:
            return orig(self)
        length = (data[0] << 16) | (data[1] << 8) | data[2]
        if len(data) < 9 + length:
            return orig(self)
        parsed = None
        with memoryview(data) as view:
            try:
                frame, _ = Frame.parse_frame_header(view[:9])
                self._validate_frame_length(length)
                frame.parse_body(view[9 : 9 + length])  # DataFrame keeps a copy, not the view
                parsed = frame
            except Exception:
                pass  # (the traceback, which references the view, is gone after this block)
        if parsed is None:
            return orig(self)  # the stock code raises h2's own error for this frame
        del data[: 9 + length]
        new_frame = self._update_header_buffer(parsed)
        return new_frame if new_frame is not None else self.__next__()

    __next__._litefs_tuned = True  # type: ignore[attr-defined]
    cls.__next__ = __next__
    return True


def _patch_send_copies() -> bool:
    """Send each DATA payload with one copy in Python instead of four (the primary's side of a
    snapshot, and every response).

    * hypercorn's ``StreamBuffer.push`` copied each body piece into its bytearray, and ``pop``
      copied it out twice (a slice, then ``bytes()``). An empty buffer now takes the piece itself,
      and ``pop`` hands over the whole buffer when the frame can take it all (the usual case: a
      snapshot piece fits one frame), else copies once;
    * h2 serialized a DATA frame by joining padding and payload, then header and body, then
      appending that to its outbound bytearray; an unpadded single DATA frame now appends its
      header and payload directly;
    * h2's ``data_to_send()`` copied its whole outbound buffer into a new ``bytes``; it now hands the
      buffer over (a ``bytearray``: both callers, hypercorn and httpcore, only write it to a socket).
    """
    try:
        import h2.connection
        from hypercorn.protocol import h2 as hypercorn_h2
        from hyperframe.frame import DataFrame
    except ImportError:
        return False
    conn_cls = h2.connection.H2Connection
    buffer_cls = getattr(hypercorn_h2, "StreamBuffer", None)
    low_water = getattr(hypercorn_h2, "BUFFER_LOW_WATER", None)
    high_water = getattr(hypercorn_h2, "BUFFER_HIGH_WATER", None)
    complete_error = getattr(hypercorn_h2, "BufferCompleteError", None)
    orig_send = getattr(conn_cls, "data_to_send", None)
    orig_prepare = getattr(conn_cls, "_prepare_for_sending", None)
    orig_push = getattr(buffer_cls, "push", None)
    orig_pop = getattr(buffer_cls, "pop", None)
    if None in (orig_send, orig_prepare, orig_push, orig_pop, low_water, high_water, complete_error):
        return False
    if getattr(orig_send, "_litefs_tuned", False):
        return True

    def data_to_send(self: Any, amount: int | None = None) -> Any:
        buf = getattr(self, "_data_to_send", None)
        if amount is not None or not isinstance(buf, bytearray):
            return orig_send(self, amount)
        self._data_to_send = bytearray()
        return buf

    def _prepare_for_sending(self: Any, frames: list[Any]) -> None:
        frame = frames[0] if len(frames) == 1 else None
        out = getattr(self, "_data_to_send", None)
        if (
            type(frame) is not DataFrame
            or frame.pad_length
            or "PADDED" in frame.flags
            or not isinstance(frame.data, (bytes, bytearray))
            or not isinstance(out, bytearray)
        ):
            return orig_prepare(self, frames)
        data = frame.data
        frame.data = b""
        try:
            header = bytearray(frame.serialize())  # hyperframe's own header, for an empty body
        finally:
            frame.data = data
        frame.body_len = n = len(data)
        header[0:3] = n.to_bytes(3, "big")
        assert n <= self.max_outbound_frame_size
        out += header
        out += data
        return None

    async def push(self: Any, data: Any) -> None:
        if self._complete:
            raise complete_error()
        if not self.buffer and type(data) is bytes:
            self.buffer = data  # taken as it is: the next push or pop copies if it must
        else:
            if not isinstance(self.buffer, bytearray):
                self.buffer = bytearray(self.buffer)
            self.buffer.extend(data)
        await self._is_empty.clear()
        if len(self.buffer) >= high_water:
            await self._paused.wait()
            await self._paused.clear()

    async def pop(self: Any, max_length: int) -> Any:
        buf = self.buffer
        length = min(len(buf), max_length)
        if length == len(buf):
            data: Any = buf
            self.buffer = bytearray()
        else:
            with memoryview(buf) as view:
                data = bytes(view[:length])
                rest = bytearray(view[length:]) if not isinstance(buf, bytearray) else None
            if rest is None:
                del buf[:length]
            else:
                self.buffer = rest
        if len(data) < low_water:
            await self._paused.set()
        if len(self.buffer) == 0:
            await self._is_empty.set()
        return data

    data_to_send._litefs_tuned = True  # type: ignore[attr-defined]
    conn_cls.data_to_send = data_to_send
    conn_cls._prepare_for_sending = _prepare_for_sending
    buffer_cls.push = push
    buffer_cls.pop = pop
    return True


def install() -> None:
    """Apply both patches once per process (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    if not _patch_frame_repr():
        log.debug("h2tune: hyperframe frame repr not patched")
    if not _patch_httpcore():
        log.debug("h2tune: httpcore HTTP/2 frame size not patched")
    if not _patch_frame_buffer():
        log.debug("h2tune: h2 frame buffer not patched")
    if not _patch_send_copies():
        log.debug("h2tune: h2/hypercorn send buffers not patched")


__all__ = ["MAX_FRAME_EXTENSION", "STREAM_MAX_FRAME_SIZE", "install"]
