"""The LTX writer's child process: turns framed (path, bytes) records from stdin into files.

Run by :class:`litefs.store.ltxwriter.LTXWriter` as ``python -I -S <this file> <ack-fd>``, so it
imports nothing but the standard library and ``fsutil.py`` beside it (loaded by path) and starts
in a few milliseconds. It has its own
interpreter and GIL: the system calls of writing a file (create, write, close, rename) no longer
hand the parent's GIL back and forth with the event-loop thread, which is what the files cost the
node when a thread of its own wrote them.

Input frames (stdin): ``<II`` path length and data length, the UTF-8 path, the data. A frame with
path length 0 asks for everything received so far to be written and acknowledged now.

Acknowledgements (the ack fd): ``<q`` the number of files written so far, after each batch. On a
failure: ``<q`` -1, ``<I`` message length, the message; then the process exits with status 1.

A batch is what arrives within BATCH_SECONDS of its first frame (or BATCH_FILES frames, or a flush
frame). At the end of stdin -- the node closed it, or the node died -- everything received is
written before the process exits, so a SIGKILLed node still gets its submitted files. SIGINT and
SIGTERM are ignored: a Ctrl-C to the terminal's process group must not cut the queue short.
"""

from __future__ import annotations

import importlib.util
import os
import select
import signal
import struct
import sys
import time

BATCH_SECONDS = 0.005
BATCH_FILES = 32
FRAME = struct.Struct("<II")
ACK = struct.Struct("<q")
_READ_SIZE = 1 << 20


def _load_fsutil():
    """``litefs.store.fsutil`` by path: importing the litefs package would cost this process the
    node's whole import time (trio, pyfuse3, ...) for three small functions."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fsutil.py")
    spec = importlib.util.spec_from_file_location("litefs_ltxwriter_fsutil", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Frames:
    """Complete frames parsed out of the bytes read so far."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.pos = 0
        self.flush = False

    def take(self) -> list[tuple[str, bytes]]:
        # Copies, not views: the buffer grows while a batch is gathered, which views would forbid.
        out = []
        buf = self.buf
        while len(self.buf) - self.pos >= FRAME.size:
            path_len, data_len = FRAME.unpack_from(self.buf, self.pos)
            end = self.pos + FRAME.size + path_len + data_len
            if end > len(self.buf):
                break
            start = self.pos + FRAME.size
            self.pos = end
            if path_len == 0:
                self.flush = True
                continue
            path = buf[start : start + path_len].decode()
            out.append((path, bytes(buf[start + path_len : end])))
        return out

    def compact(self) -> None:
        del self.buf[: self.pos]
        self.pos = 0


def serve(inp: int, ack: int) -> None:
    write_file_atomically = _load_fsutil().write_file_atomically
    frames = Frames()
    written = 0
    eof = False
    while not eof:
        chunk = os.read(inp, _READ_SIZE)
        if not chunk:
            eof = True
        frames.buf += chunk
        pending = frames.take()
        deadline = time.monotonic() + BATCH_SECONDS
        while not eof and not frames.flush and len(pending) < BATCH_FILES:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([inp], [], [], left)[0]:
                break
            chunk = os.read(inp, _READ_SIZE)
            if not chunk:
                eof = True
            frames.buf += chunk
            pending += frames.take()
        frames.flush = False
        for path, data in pending:
            try:
                write_file_atomically(path, data)  # not fsynced: see litefs/store/wal.py
            except OSError as exc:
                message = f"cannot write {path}: {exc}".encode()
                os.write(ack, ACK.pack(-1) + struct.pack("<I", len(message)) + message)
                sys.exit(1)
            written += 1
        frames.compact()
        os.write(ack, ACK.pack(written))


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    serve(sys.stdin.fileno(), int(sys.argv[1]))


if __name__ == "__main__":
    main()
