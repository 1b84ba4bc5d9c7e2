"""A real Consul dev agent for the Consul lease tests (one per test session)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from litefs.testing_services import ConsulAgent, ServiceUnavailable


@pytest.fixture(scope="session")
def consul_url() -> Iterator[str]:
    """Base URL of a Consul agent: ``LITEFS_TEST_CONSUL_URL`` if set, else one started here."""
    external = os.environ.get("LITEFS_TEST_CONSUL_URL")
    if external:
        yield external.rstrip("/")
        return
    try:
        agent = ConsulAgent().start()
    except ServiceUnavailable as exc:
        pytest.skip(f"!!! CONSUL UNAVAILABLE -- Consul lease tests SKIPPED: {exc}")
    try:
        yield agent.url
    finally:
        agent.stop()


@pytest.fixture
def lease_key() -> str:
    """A key no other test uses, so tests sharing one agent cannot see each other's leases."""
    return f"litefs-test/{uuid.uuid4().hex[:12]}"


#: The ACL master token of the ACL-enforcing agent below.
ACL_TOKEN = "litefs-test-master-token"


@pytest.fixture(scope="session")
def consul_acl() -> Iterator[tuple[str, str]]:
    """(URL, master token) of a second agent with ACLs on and default policy deny."""
    hcl = f'acl {{ enabled = true default_policy = "deny" tokens {{ master = "{ACL_TOKEN}" }} }}'
    try:
        agent = ConsulAgent(extra_args=["-hcl", hcl], token=ACL_TOKEN).start()
    except ServiceUnavailable as exc:
        pytest.skip(f"!!! CONSUL UNAVAILABLE -- Consul lease tests SKIPPED: {exc}")
    try:
        yield agent.url, ACL_TOKEN
    finally:
        agent.stop()
