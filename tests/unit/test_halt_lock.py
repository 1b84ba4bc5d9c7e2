"""The HALT lock document and request parsing (litefs.replication.halt)."""

from __future__ import annotations

import pytest

from litefs.ltx import Pos
from litefs.replication.halt import HaltError, HaltLock, format_rfc3339_nano, parse_lock_id, parse_rfc3339


def test_halt_lock_json_round_trip() -> None:
    lock = HaltLock(1234567890123, Pos(5, 0xF630F5AE3060002C), 1_700_000_000.123456)
    doc = lock.to_json()
    expires = doc.pop("expires")
    assert doc == {
        "id": 1234567890123,
        "pos": {"TXID": "0000000000000005", "PostApplyChecksum": "f630f5ae3060002c"},
    }
    assert expires.startswith("2023-11-14T22:13:20.123456") and expires.endswith("Z")
    doc["expires"] = expires
    back = HaltLock.from_json(doc)
    assert back.id == lock.id and back.pos == lock.pos
    assert abs(back.expires - lock.expires) < 1e-6


def test_rfc3339_nano_formats_like_go() -> None:
    assert format_rfc3339_nano(0) == "1970-01-01T00:00:00Z"
    assert format_rfc3339_nano(1.5) == "1970-01-01T00:00:01.5Z"
    assert parse_rfc3339("1970-01-01T00:00:01.000000001Z") == pytest.approx(1.000000001)
    assert parse_rfc3339("1970-01-01T01:00:00+01:00") == 0


def test_parse_lock_id() -> None:
    assert parse_lock_id("42") == 42
    assert parse_lock_id("-1") == -1
    for bad in (None, "", "x", "1.5", str(1 << 63)):
        with pytest.raises(HaltError, match="invalid id") as info:
            parse_lock_id(bad)
        assert info.value.status == 400


def test_invalid_lock_document() -> None:
    with pytest.raises(HaltError, match="invalid halt lock document"):
        HaltLock.from_json({"id": 1})


def test_primary_drops_expired_locks() -> None:
    """The primary's monitor drops a lock once its expiry time passed (and tells plugins)."""
    import time
    from types import SimpleNamespace

    import trio

    from litefs.replication.halt import PrimaryHalts, _Held

    events: list = []
    hook = SimpleNamespace(litefs_halt_changed=lambda node, event: events.append(event))
    node = SimpleNamespace(is_primary=True, registry=SimpleNamespace(hook=hook))

    async def main() -> None:
        halts = PrimaryHalts(node)  # type: ignore[arg-type]
        now = time.time()
        old = _Held("a", HaltLock(1, Pos(1, 1), now - 1), holder=5)
        fresh = _Held("b", HaltLock(2, Pos(1, 1), now + 30), holder=5)
        pending = _Held("c", HaltLock(3, Pos(1, 1), 0.0), holder=5)  # still being acquired
        halts.held.update(a=old, b=fresh, c=pending)
        halts.expire(now)
        assert set(halts.held) == {"b", "c"}
        assert old.released.is_set() and not fresh.released.is_set()
        node.is_primary = False  # demoted: every granted lock goes
        halts.expire(now)
        assert set(halts.held) == {"c"}

    trio.run(main)
    assert [(e.db, e.held, e.lock_id, e.holder) for e in events] == [("a", False, 1, 5), ("b", False, 2, 5)]
