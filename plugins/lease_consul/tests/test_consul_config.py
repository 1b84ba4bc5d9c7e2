"""lease.consul: factory, URL parsing and LiteFS's validation messages (no Consul needed)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from litefs.lease import LeaseContext, LeaseError
from litefs.plugins import load_plugins
from litefs_lease_consul import ConsulConfig, ConsulConfigError, ConsulLeaser, create_leaser, parse_consul_url


def context(
    section: ConsulConfig, hostname: str = "node-a", advertise_url: str = "http://node-a:20202"
) -> LeaseContext:
    cfg = SimpleNamespace(lease=SimpleNamespace(type="consul", candidate=True))
    return LeaseContext(
        config=cfg, section=section, hostname=hostname, advertise_url=advertise_url, node_id=1
    )  # type: ignore[arg-type]


def test_url_gives_address_token_and_prefix() -> None:
    assert parse_consul_url("https://:s3cr%2Ft@consul.example:8501/apps/one/") == (
        "https", "consul.example", 8501, "s3cr/t", "apps/one",
    )  # fmt: skip
    assert parse_consul_url("http://127.0.0.1:8500") == ("http", "127.0.0.1", 8500, "", "")
    assert parse_consul_url("https://consul.example") == ("https", "consul.example", 443, "", "")


def test_key_prefix_node_name_and_cluster_id_key() -> None:
    leaser = create_leaser(context(ConsulConfig(url="http://:tok@127.0.0.1:8500/pre/", key="litefs/app")))
    assert leaser.key == "pre/litefs/app"
    assert leaser.cluster_id_key == "pre/litefs/app/clusterid"
    assert leaser.node_name == "pre/litefs"
    assert "tok" not in leaser.url  # the token never appears in messages
    plain = create_leaser(context(ConsulConfig(url="http://127.0.0.1:8500", key="litefs/app")))
    assert plain.key == "litefs/app" and plain.node_name == ""
    assert (plain.ttl, plain.lock_delay) == (10.0, 1.0)


@pytest.mark.parametrize(
    ("section", "hostname", "advertise_url", "message"),
    [
        (ConsulConfig(url="http://127.0.0.1:8500"), "h", "http://h:1", "must specify a consul key"),
        (ConsulConfig(key="k"), "h", "http://h:1", "must specify a consul url"),
        (
            ConsulConfig(url="http://127.0.0.1:8500", key="k"),
            "",
            "http://h:1",
            "must specify a hostname for this node",
        ),
        (
            ConsulConfig(url="http://127.0.0.1:8500", key="k"),
            "h",
            "",
            "must specify an advertise URL for this node",
        ),
        (ConsulConfig(url="http://127.0.0.1:8500", key="k", ttl=5), "h", "http://h:1", "between 10s and 24h"),
        (ConsulConfig(url="ftp://x", key="k"), "h", "http://h:1", "invalid consul url 'ftp://x'"),
        (
            ConsulConfig(url="http://:tok@h:99999", key="k"),
            "h",
            "http://h:1",
            r"invalid consul url 'http://:\*\*\*@h:99999'",
        ),
    ],
)
def test_bad_config_is_refused_with_litefs_messages(
    section: ConsulConfig, hostname: str, advertise_url: str, message: str
) -> None:
    with pytest.raises(ConsulConfigError, match=message) as err:
        create_leaser(context(section, hostname, advertise_url))
    assert isinstance(err.value, LeaseError)


def test_registered_as_consul_with_its_section() -> None:
    registry = load_plugins(environ={"LITEFS_LOAD_PLUGINS": "lease_consul"})
    lease_type = registry.lease_type("consul")
    assert lease_type.factory is create_leaser
    assert registry.sections["lease.consul"] is ConsulConfig
    section = ConsulConfig(url="http://127.0.0.1:8500", key="k")
    cfg = SimpleNamespace(
        lease=SimpleNamespace(type="consul", candidate=True, hostname="node-a", advertise_url=""),
        section=lambda path: section if path == "lease.consul" else None,
    )
    leaser = registry.create_leaser(cfg, node_id=1, http_port=20202)  # type: ignore[arg-type]
    assert isinstance(leaser, ConsulLeaser)
    assert leaser.advertise_url == "http://node-a:20202"


def test_environment_cannot_redirect_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """python-consul2 lets CONSUL_HTTP_ADDR/TOKEN override its arguments; litefs.yml must win."""
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "10.9.9.9:1234")
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "from-env")
    leaser = create_leaser(context(ConsulConfig(url="http://:tok@127.0.0.1:8500", key="k")))
    assert leaser._client.http.base_uri == "http://127.0.0.1:8500"
    assert leaser._client.token == "tok"
