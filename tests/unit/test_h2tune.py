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
