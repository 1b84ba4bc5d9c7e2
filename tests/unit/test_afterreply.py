"""Work left until a FUSE reply is sent (litefs.store.afterreply, litefs.fuse.session.defer)."""

from __future__ import annotations

import logging

from litefs.fuse import session
from litefs.store.afterreply import after_reply, deferring


def test_work_runs_at_once_outside_a_deferring_handler() -> None:
    done: list[int] = []
    after_reply(lambda: done.append(1))
    assert done == [1]


def test_inside_a_handler_work_waits_for_the_deferral_and_keeps_its_order() -> None:
    done: list[int] = []
    queue: list = []
    with deferring(queue.append):
        after_reply(lambda: done.append(1))
        after_reply(lambda: done.append(2))
        with deferring(None):  # e.g. a nested call that must not defer
            after_reply(lambda: done.append(0))
        assert done == [0]
    after_reply(lambda: done.append(3))  # the block is over: at once again
    assert done == [0, 3]
    for work in queue:
        work()
    assert done == [0, 3, 1, 2]


def test_the_session_runs_deferred_work_in_order_and_survives_a_failure(caplog) -> None:
    done: list[str] = []

    def boom() -> None:
        raise RuntimeError("plugin bug")

    session.defer(lambda: done.append("a"))
    session.defer(boom)
    session.defer(lambda: done.append("b"))
    with caplog.at_level(logging.ERROR, logger="litefs.fuse"):
        session.run_deferred()
    assert done == ["a", "b"]
    assert "deferred after a reply failed" in caplog.text
    session.run_deferred()  # nothing left
    assert done == ["a", "b"]
