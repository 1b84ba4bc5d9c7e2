"""lease.etcd: factory and validation (no etcd needed)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from litefs.lease import LeaseContext, LeaseError
from litefs.plugins import load_plugins
from litefs_lease_etcd import EtcdConfig, EtcdConfigError, EtcdLeaser, create_leaser


def context(
    section: EtcdConfig, hostname: str = "node-a", advertise_url: str = "http://node-a:20202"
) -> LeaseContext:
    cfg = SimpleNamespace(lease=SimpleNamespace(type="etcd", candidate=True))
    return LeaseContext(
        config=cfg, section=section, hostname=hostname, advertise_url=advertise_url, node_id=1
    )  # type: ignore[arg-type]


async def test_defaults_and_endpoint_forms() -> None:
    assert EtcdConfig().endpoints == ["http://127.0.0.1:2379"] and EtcdConfig().ttl == 10.0
    leaser = create_leaser(
        context(EtcdConfig(endpoints=["10.0.0.1:2379", "https://e2:2379/"], key="/litefs/app"))
    )
    assert leaser.client.endpoints == ["http://10.0.0.1:2379", "https://e2:2379"]
    assert leaser.cluster_id_key == "/litefs/app/clusterid"
    await leaser.close()


@pytest.mark.parametrize(
    ("section", "hostname", "advertise_url", "message"),
    [
        (EtcdConfig(), "h", "http://h:1", "must specify an etcd key"),
        (EtcdConfig(key="k", endpoints=[]), "h", "http://h:1", "at least one etcd endpoint"),
        (EtcdConfig(key="k"), "", "http://h:1", "must specify a hostname for this node"),
        (EtcdConfig(key="k"), "h", "", "must specify an advertise URL for this node"),
        (EtcdConfig(key="k", ttl=0.5), "h", "http://h:1", "ttl must be at least 1s"),
    ],
)
def test_bad_config_is_refused(section: EtcdConfig, hostname: str, advertise_url: str, message: str) -> None:
    with pytest.raises(EtcdConfigError, match=message) as err:
        create_leaser(context(section, hostname, advertise_url))
    assert isinstance(err.value, LeaseError)


async def test_registered_as_etcd_with_its_section() -> None:
    registry = load_plugins(environ={"LITEFS_LOAD_PLUGINS": "lease_etcd"})
    assert registry.lease_type("etcd").factory is create_leaser
    assert registry.sections["lease.etcd"] is EtcdConfig
    section = EtcdConfig(key="/k")
    cfg = SimpleNamespace(
        lease=SimpleNamespace(type="etcd", candidate=True, hostname="node-a", advertise_url=""),
        section=lambda path: section if path == "lease.etcd" else None,
    )
    leaser = registry.create_leaser(cfg, node_id=1, http_port=20202)  # type: ignore[arg-type]
    assert isinstance(leaser, EtcdLeaser)
    assert leaser.advertise_url == "http://node-a:20202"
    await leaser.close()
