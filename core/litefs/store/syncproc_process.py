"""The WAL syncer's child process: fdatasync each descriptor it is sent, answer with the result.

Run by :class:`litefs.store.syncproc.ProcessSync` as ``python -I -S <this file> <socket-fd>``
(standard library only, so it starts in milliseconds). The socket is a ``SOCK_SEQPACKET`` pair.

Request: ``<Q`` token, with one file descriptor attached (``SCM_RIGHTS``). Reply: ``<Qi`` token and
0, or the errno of the failed ``fdatasync``. Requests are served in order, one at a time. The process
exits when the node closes its end (or dies); SIGINT and SIGTERM are ignored, as a Ctrl-C to the
terminal's process group is for the node to handle.
"""

from __future__ import annotations

import array
import os
import signal
import socket
import struct
import sys

REQUEST = struct.Struct("<Q")
REPLY = struct.Struct("<Qi")


def serve(sock: socket.socket) -> None:
    fd_size = array.array("i").itemsize
    while True:
        try:
            msg, ancdata, _flags, _addr = sock.recvmsg(REQUEST.size, socket.CMSG_SPACE(fd_size))
        except InterruptedError:
            continue
        except OSError:
            return
        if not msg:
            return
        fds = array.array("i")
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - (len(data) % fd_size)])
        (token,) = REQUEST.unpack(msg)
        if not fds:
            result = 9  # EBADF: nothing to sync
        else:
            try:
                os.fdatasync(fds[0])
                result = 0
            except OSError as exc:
                result = exc.errno or 5
            for fd in fds:
                os.close(fd)
        try:
            sock.send(REPLY.pack(token, result))
        except OSError:
            return


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    serve(socket.socket(fileno=int(sys.argv[1])))


if __name__ == "__main__":
    main()
