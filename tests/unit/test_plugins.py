"""The plugin system: discovery through entry points, selection by config, listing."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from litefs.hookspecs import hookimpl
from litefs.plugins import PluginError, load_plugins

BUILTIN = {
    "lease_static",
    "lease_consul",
    "lease_etcd",
    "proxy",
    "exec_supervisor",
    "metrics",
    "backup_s3",
}


def test_builtin_plugins_are_found_through_entry_points() -> None:
    registry = load_plugins(environ={})
    names = {row.name for row in registry.list_plugins()}
    assert BUILTIN <= names
    rows = {row.name: row for row in registry.list_plugins()}
    assert rows["lease_static"].distribution == "litefs-lease-static"
    assert rows["lease_static"].version == "0.1.0"
    assert "litefs_register_lease_types" in rows["lease_static"].hooks


def test_lease_types_and_sections_registered() -> None:
    registry = load_plugins(environ={})
    assert {"static", "consul", "etcd"} <= set(registry.lease_types)
    assert registry.lease_types["consul"].plugin == "lease_consul"
    for section in ("proxy", "exec", "backup", "metrics", "lease.consul", "lease.etcd"):
        assert section in registry.sections, section


def test_unknown_lease_type_lists_installed_types() -> None:
    registry = load_plugins(environ={})
    with pytest.raises(PluginError) as err:
        registry.lease_type("zookeeper")
    message = str(err.value)
    assert "'zookeeper'" in message
    assert "'static' (from lease_static)" in message
    assert "'consul' (from lease_consul)" in message


def test_allow_list_and_deny_list_from_environment() -> None:
    only = load_plugins(environ={"LITEFS_LOAD_PLUGINS": "lease_static,proxy"})
    assert {r.name for r in only.list_plugins()} == {"lease_static", "proxy"}
    none = load_plugins(environ={"LITEFS_LOAD_PLUGINS": ""})
    assert none.list_plugins() == []
    denied = load_plugins(environ={"LITEFS_DISABLE_PLUGINS": "proxy"})
    names = {r.name for r in denied.list_plugins()}
    assert "proxy" not in names and "lease_static" in names
    assert "proxy" not in denied.sections


def test_allow_list_from_config_intersects_environment() -> None:
    registry = load_plugins(enable=["lease_static", "metrics"], environ={"LITEFS_LOAD_PLUGINS": "metrics"})
    assert {r.name for r in registry.list_plugins()} == {"metrics"}


def test_misspelt_hook_fails_loudly() -> None:
    class Misspelt:
        @hookimpl
        def litefs_register_lease_type(self, register):  # missing the final "s"
            pass

    with pytest.raises(PluginError, match="unknown hook"):
        load_plugins(environ={"LITEFS_LOAD_PLUGINS": ""}, extra={"misspelt": Misspelt()})


def test_duplicate_lease_type_names_both_plugins() -> None:
    class Another:
        @hookimpl
        def litefs_register_lease_types(self, register):
            register("static", object)

    with pytest.raises(PluginError, match="registered twice: by another and by lease_static"):
        load_plugins(environ={"LITEFS_LOAD_PLUGINS": "lease_static"}, extra={"another": Another()})


def test_registered_plugin_object_gets_node_hooks() -> None:
    seen = []

    class Watcher:
        @hookimpl
        def litefs_tx_committed(self, node, event):
            seen.append(event)

    registry = load_plugins(environ={"LITEFS_LOAD_PLUGINS": ""}, extra={"watcher": Watcher()})
    registry.hook.litefs_tx_committed(node=None, event="tx")
    assert seen == ["tx"]


# --- a real third-party distribution, built and installed into a temp dir ----------------------

THIRD_PARTY_PYPROJECT = """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "litefs-lease-foo"
version = "3.1.4"
dependencies = []

[project.entry-points.litefs]
lease_foo = "litefs_lease_foo"
"""

THIRD_PARTY_MODULE = '''
"""A lease backend that is not part of litefs-py."""
from dataclasses import dataclass, field

from litefs.hookspecs import hookimpl


@dataclass
class FooConfig:
    endpoint: str = ""
    ttl: float = field(default=5.0, metadata={"duration": True})


class FooLeaser:
    type = "foo"

    def __init__(self, context):
        self.context = context


@hookimpl
def litefs_register_lease_types(register):
    register("foo", FooLeaser, FooConfig)


@hookimpl
def litefs_plugin_enabled(config):
    return config.lease.type == "foo"
'''


@pytest.fixture(scope="module")
def third_party_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install --target`` a throwaway plugin distribution; return the target directory."""
    src = tmp_path_factory.mktemp("foo-src")
    (src / "pyproject.toml").write_text(THIRD_PARTY_PYPROJECT)
    (src / "litefs_lease_foo.py").write_text(THIRD_PARTY_MODULE)
    site = tmp_path_factory.mktemp("foo-site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    return site


def _run(litefs_bin: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([litefs_bin, *args], env=env, capture_output=True, text=True, timeout=60)


def test_third_party_lease_plugin_is_listed(
    third_party_site: Path, litefs_bin: str, clean_env, tmp_path
) -> None:
    env = {**clean_env, "PYTHONPATH": str(third_party_site)}
    out = _run(litefs_bin, env, "plugins", "list", "--json")
    assert out.returncode == 0, out.stderr
    rows = {row["name"]: row for row in json.loads(out.stdout)}
    assert rows["lease_foo"]["distribution"] == "litefs-lease-foo"
    assert rows["lease_foo"]["version"] == "3.1.4"
    assert rows["lease_foo"]["hooks"] == ["litefs_plugin_enabled", "litefs_register_lease_types"]


def test_third_party_lease_plugin_selected_by_lease_type(
    third_party_site: Path, litefs_bin: str, clean_env, tmp_path: Path
) -> None:
    config = tmp_path / "litefs.yml"
    config.write_text(
        textwrap.dedent(
            f"""\
            fuse:
              dir: {tmp_path}/mnt
            data:
              dir: {tmp_path}/data
            lease:
              type: foo
              foo:
                endpoint: http://127.0.0.1:9999
                ttl: 3s
            """
        )
    )
    env = {**clean_env, "PYTHONPATH": str(third_party_site)}
    check = _run(litefs_bin, env, "config", "check", "-config", str(config))
    assert check.returncode == 0, check.stderr
    shown = _run(litefs_bin, env, "config", "show", "-config", str(config))
    assert "endpoint: http://127.0.0.1:9999" in shown.stdout
    assert "ttl: 3s" in shown.stdout
    listed = _run(litefs_bin, env, "plugins", "list", "--json", "-config", str(config))
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["lease_foo"]["enabled"] is True
    assert rows["lease_static"]["enabled"] is False

    # Without the plugin installed, the same file is refused: the type and its section are unknown.
    without = _run(litefs_bin, clean_env, "config", "check", "-config", str(config))
    assert without.returncode == 2
    assert "foo" in without.stderr


def test_lease_value_extras_reach_the_lease_factory(tmp_path) -> None:
    from litefs.config import parse_config

    seen = {}

    class Extras:
        @hookimpl
        def litefs_lease_value_extras(self, config):
            return {"region": "ord"}

    class Backend:
        @hookimpl
        def litefs_register_lease_types(self, register):
            def factory(context):
                seen.update(context.extra)
                return object()

            register("capture", factory)

    registry = load_plugins(
        environ={"LITEFS_LOAD_PLUGINS": ""}, extra={"extras": Extras(), "backend": Backend()}
    )
    config = parse_config(
        f"fuse: {{dir: {tmp_path}/m}}\ndata: {{dir: {tmp_path}/d}}\nlease: {{type: capture}}\n",
        sections=registry.sections,
    )
    registry.create_leaser(config, node_id=1, http_port=20202)
    assert seen == {"region": "ord"}


def test_proxy_publishes_its_url_in_the_lease_value(tmp_path) -> None:
    from litefs.config import parse_config

    registry = load_plugins(environ={"LITEFS_LOAD_PLUGINS": "proxy"})
    config = parse_config(
        f"fuse: {{dir: {tmp_path}/m}}\ndata: {{dir: {tmp_path}/d}}\n"
        "lease: {type: static, hostname: node1}\nproxy: {addr: ':8080', target: 'localhost:8081', db: db}\n",
        sections=registry.sections,
    )
    assert registry.hook.litefs_lease_value_extras(config=config) == [{"proxy-url": "http://node1:8080"}]
