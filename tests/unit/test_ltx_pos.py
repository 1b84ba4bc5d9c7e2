"""Text forms: TXIDs, positions, file names (ltx.md section 6)."""

from __future__ import annotations

import pytest

from litefs.ltx import LTXError, Pos, format_filename, format_txid, parse_filename, parse_txid


def test_txid_round_trip() -> None:
    assert format_txid(13) == "000000000000000d"
    assert parse_txid("000000000000000d") == 13
    assert parse_txid(format_txid((1 << 64) - 1)) == (1 << 64) - 1


@pytest.mark.parametrize(
    "bad", ["d", "00000000000000d", "000000000000000D", "0x0000000000000d", " 000000000000000d"]
)
def test_parse_txid_rejects(bad: str) -> None:
    with pytest.raises(LTXError, match="TXID"):
        parse_txid(bad)


@pytest.mark.parametrize("bad", [-1, 1 << 64])
def test_format_txid_rejects_out_of_range(bad: int) -> None:
    with pytest.raises(LTXError):
        format_txid(bad)


def test_pos_text() -> None:
    pos = Pos(13, 0xFE3831A381C602B9)
    assert str(pos) == "000000000000000d/fe3831a381c602b9"
    assert Pos.parse("000000000000000d/fe3831a381c602b9") == pos
    assert str(Pos.zero()) == "0000000000000000/0000000000000000"
    assert pos.to_json() == {"TXID": "000000000000000d", "PostApplyChecksum": "fe3831a381c602b9"}
    with pytest.raises(AttributeError):
        pos.txid = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "bad",
    ["", "000000000000000d", "000000000000000d-fe3831a381c602b9", "000000000000000d/fe3831a381c602b9\n"],
)
def test_pos_parse_rejects(bad: str) -> None:
    with pytest.raises(LTXError, match="position"):
        Pos.parse(bad)


def test_filename_round_trip() -> None:
    assert format_filename(1, 13) == "0000000000000001-000000000000000d.ltx"
    assert parse_filename("0000000000000001-000000000000000d.ltx") == (1, 13)


@pytest.mark.parametrize(
    "bad",
    [
        "0000000000000001-000000000000000D.ltx",
        "0000000000000001-000000000000000d.ltx.tmp",
        "1-d.ltx",
        "000000000000000d-0000000000000001.ltx",
        "0000000000000000-0000000000000001.ltx",
        "database",
    ],
)
def test_parse_filename_rejects(bad: str) -> None:
    with pytest.raises(LTXError, match="file name"):
        parse_filename(bad)
