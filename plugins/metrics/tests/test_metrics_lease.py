"""Lease metrics on a node whose lease lives in a real etcd: renewals timed, failures counted."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from litefs.testing import LiteFSNode
from litefs.testing_services import EtcdCluster, ServiceUnavailable

from .metrics_helpers import sample, scrape

pytestmark = [pytest.mark.fuse, pytest.mark.services]


def wait_until(cond: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = cond()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what} not reached after {timeout}s"
        time.sleep(0.1)


def renewals(node: LiteFSNode) -> tuple[float, float]:
    fams = scrape(node)
    count = sample(fams, "litefs_lease_renew_seconds", "litefs_lease_renew_seconds_count")
    return count, sample(fams, "litefs_lease_renew_failure_count")


def test_etcd_lease_renewals_and_failures_are_counted(tmp_path: Path) -> None:
    try:
        etcd = EtcdCluster(1).start()
    except ServiceUnavailable as exc:
        pytest.skip(f"!!! ETCD UNAVAILABLE -- lease metrics test SKIPPED: {exc}")
    node = LiteFSNode(tmp_path, name="n1")
    node.config["lease"] = {
        "type": "etcd",
        "hostname": "n1",
        "advertise-url": node.url,
        "etcd": {"endpoints": etcd.endpoints, "key": f"/litefs-test/{uuid.uuid4().hex[:12]}", "ttl": "2s"},
    }
    try:
        node.start()
        wait_until(lambda: scrape(node)["litefs_is_primary"].samples[0].value == 1, what="primary")
        # TTL 2 s: a renewal every second, each one a round trip to etcd.
        count, failures = wait_until(lambda: (r := renewals(node))[0] >= 2 and r, what="two renewals")
        assert failures == 0
        fams = scrape(node)
        total = sample(fams, "litefs_lease_renew_seconds", "litefs_lease_renew_seconds_sum")
        assert 0 < total / count < 1.0
        # etcd goes away: renewals fail and are counted; the node stops being primary.
        etcd.stop()
        wait_until(lambda: renewals(node)[1] >= 1, what="a failed renewal")
        wait_until(lambda: scrape(node)["litefs_is_primary"].samples[0].value == 0, what="demotion")
    finally:
        node.stop()
        etcd.stop()
