"""The public event objects: TxEvent's kind and local flag, names of replicas in stream events."""

from __future__ import annotations

import pytest

from litefs.events import TX_KINDS, LTXSentEvent, ReplicaPosition, TxEvent


def tx(**kwargs: object) -> TxEvent:
    return TxEvent("db", 2, 0x1234, 4096, 3, 1_700_000_000_000, "/x.ltx", **kwargs)  # type: ignore[arg-type]


def test_kind_and_local_follow_each_other() -> None:
    assert (tx().kind, tx().local) == ("commit", True)  # old calls: a local commit
    assert (tx(local=True).kind, tx(local=False).kind) == ("commit", "apply")
    for kind in TX_KINDS:
        assert tx(kind=kind).local is (kind in ("commit", "drop", "import"))
    assert tx(kind="snapshot", local=False).kind == "snapshot"
    # Old positional construction (local as the 8th argument) still works.
    assert TxEvent("db", 2, 1, 4096, 3, 0, "/x.ltx", False).kind == "apply"


def test_bad_kinds_are_refused_with_the_culprit_named() -> None:
    with pytest.raises(ValueError, match="'checkpoint'"):
        tx(kind="checkpoint")
    with pytest.raises(ValueError, match="'apply' is not local"):
        tx(kind="apply", local=True)


def test_the_json_of_a_tx_event_is_unchanged_by_its_kind() -> None:
    assert tx(kind="apply").to_json() == tx(kind="commit").to_json()
    assert tx().to_json()["data"]["txID"] == "0000000000000002"


def test_replicas_are_named_by_hostname_else_node_id() -> None:
    assert LTXSentEvent("db", "00000000000000AB", "", 1, 1, 10, snapshot=False).replica == "00000000000000AB"
    assert LTXSentEvent("db", "00000000000000AB", "r1", 1, 1, 10, snapshot=False).replica == "r1"
    assert ReplicaPosition("00000000000000AB", "", 1, 2, 0, 0.0).name == "00000000000000AB"
