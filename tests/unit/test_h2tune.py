"""h2tune: the replica's h2 patches keep the library's behaviour, only cheaper."""

from __future__ import annotations

import binascii

import pytest
from hyperframe.frame import DataFrame

from litefs.replication import h2tune


def stock_repr(frame: DataFrame) -> str:
    """What hyperframe itself prints: the serialized body, hex, first 20 digits."""
    r = binascii.hexlify(frame.serialize_body()).decode("ascii")
    return "<hex:" + (r[:20] + "..." if len(r) > 20 else r) + ">" if r else "None"


@pytest.mark.parametrize(
    ("data", "pad"), [(b"", 0), (b"abc", 0), (bytes(range(200)), 0), (b"ab", 5), (bytes(range(50)), 3)]
)
def test_data_frame_repr_is_unchanged(data: bytes, pad: int) -> None:
    h2tune.install()
    frame = DataFrame(1, data=data)
    if pad:
        frame.flags.add("PADDED")
        frame.pad_length = pad
    want = stock_repr(frame)
    assert frame._body_repr() == want
    assert repr(frame).endswith(want)


def _frames_from(stream: bytes, split: int) -> list:
    from h2.frame_buffer import FrameBuffer

    buf = FrameBuffer(server=False)
    buf.max_frame_size = 1 << 20
    out = []
    for start in range(0, len(stream), split):
        buf.add_data(stream[start : start + split])
        out.extend(list(buf))
    return out


@pytest.mark.parametrize("split", [1, 7, 9, 1000, 1 << 20])
def test_data_frames_parse_the_same_from_the_patched_buffer(split: int) -> None:
    """The patched FrameBuffer parses DATA frames from its own buffer: same frames, any split,
    padded or not, mixed with other frame types."""
    from hyperframe.frame import PingFrame, WindowUpdateFrame

    h2tune.install()
    frames = [DataFrame(1, data=b"a" * 5000), PingFrame(0, opaque_data=b"12345678")]
    padded = DataFrame(3, data=b"xyz" * 100, flags=["PADDED", "END_STREAM"])
    padded.pad_length = 17
    frames += [padded, WindowUpdateFrame(0, window_increment=99), DataFrame(5, data=b"")]
    stream = b"".join(f.serialize() for f in frames)
    got = _frames_from(stream, split)
    assert [type(f) for f in got] == [type(f) for f in frames]
    assert [f.serialize() for f in got] == [f.serialize() for f in frames]


def test_a_data_frame_too_large_is_still_refused() -> None:
    from h2.exceptions import FrameTooLargeError
    from h2.frame_buffer import FrameBuffer

    h2tune.install()
    buf = FrameBuffer(server=False)
    buf.max_frame_size = 16384
    buf.add_data(DataFrame(1, data=b"z" * 20000).serialize())
    with pytest.raises(FrameTooLargeError):
        list(buf)


def test_h2_hands_its_whole_outbound_buffer_over() -> None:
    """data_to_send() returns everything queued (without copying it) and starts an empty buffer;
    with an amount it behaves as before."""
    import h2.config
    import h2.connection

    h2tune.install()
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    first = conn.data_to_send()
    assert bytes(first).startswith(b"PRI * HTTP/2.0")
    assert conn.data_to_send() == b""
    conn.ping(b"12345678")
    part = conn.data_to_send(5)
    rest = conn.data_to_send()
    assert len(part) == 5 and len(part) + len(rest) == 17  # a PING frame: 9 + 8 bytes


@pytest.mark.parametrize("max_length", [10, 100, 1000])
def test_hypercorn_stream_buffer_pops_the_same_bytes(max_length: int) -> None:
    import trio
    from hypercorn.protocol.h2 import StreamBuffer
    from hypercorn.trio.worker_context import EventWrapper

    h2tune.install()

    async def main() -> list[bytes]:
        buf = StreamBuffer(EventWrapper)
        await buf.push(b"".join(bytes([i]) * 10 for i in range(30)))  # 300 bytes
        out = []
        while data := await buf.pop(max_length):
            out.append(bytes(data))
        assert buf.complete is False and len(buf.buffer) == 0
        return out

    out = trio.run(main)
    assert b"".join(out) == b"".join(bytes([i]) * 10 for i in range(30))
    assert all(len(d) <= max_length for d in out)


@pytest.mark.parametrize("end_stream", [False, True])
def test_h2_writes_a_data_frame_exactly_as_hyperframe_serializes_it(end_stream: bool) -> None:
    import h2.config
    import h2.connection
    from hyperframe.frame import Frame

    h2tune.install()
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "POST"), (":path", "/"), (":scheme", "http"), (":authority", "x")])
    conn.data_to_send()
    payload = bytes(range(256)) * 40
    conn.send_data(1, payload, end_stream=end_stream)
    wire = bytes(conn.data_to_send())
    expected = DataFrame(1, data=payload, flags=["END_STREAM"] if end_stream else [])
    assert wire == expected.serialize()
    frame, length = Frame.parse_frame_header(memoryview(wire[:9]))
    frame.parse_body(memoryview(wire[9 : 9 + length]))
    assert frame.data == payload and ("END_STREAM" in frame.flags) == end_stream
