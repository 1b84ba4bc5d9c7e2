"""The ``litefs`` command line as a user runs it: real subprocesses, exit codes and messages."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest


def run(litefs_bin: str, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None):
    return subprocess.run([litefs_bin, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=60)


def test_version(litefs_bin: str) -> None:
    out = run(litefs_bin, "version")
    assert out.returncode == 0
    assert out.stdout.startswith("LiteFS ")


def test_no_command_prints_usage_and_exits_2(litefs_bin: str) -> None:
    out = run(litefs_bin)
    assert out.returncode == 2
    assert "Usage" in out.stderr


def test_unknown_command_exits_1(litefs_bin: str) -> None:
    out = run(litefs_bin, "frobnicate")
    assert out.returncode == 1
    assert "litefs frobnicate: unknown command" in out.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["mount", "--help"],
        ["config", "show", "--help"],
        ["config", "check", "--help"],
        ["plugins", "list", "--help"],
        ["version", "--help"],
    ],
)
def test_help_everywhere(litefs_bin: str, args: list[str]) -> None:
    out = run(litefs_bin, *args)
    assert out.returncode == 0, out.stderr
    assert "Usage" in out.stdout


def test_unknown_flag_is_a_usage_error(litefs_bin: str) -> None:
    out = run(litefs_bin, "config", "check", "-bogus")
    assert out.returncode == 2


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "litefs.yml"
    path.write_text(textwrap.dedent(body))
    return path


def test_mount_args_without_dashdash_is_a_usage_error(litefs_bin: str, tmp_path: Path) -> None:
    config = write_config(
        tmp_path, f"fuse: {{dir: {tmp_path}/mnt}}\ndata: {{dir: {tmp_path}/data}}\nlease: {{type: static}}\n"
    )
    out = run(litefs_bin, "mount", "-config", str(config), "myapp")
    assert out.returncode == 2
    assert "too many arguments, specify a '--' to specify an exec command" in out.stderr


def test_config_check_ok(litefs_bin: str, tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        f"""\
        fuse:
          dir: {tmp_path}/mnt
        data:
          dir: {tmp_path}/data
        lease:
          type: static
          candidate: true
        proxy:
          addr: ":8080"
          target: "localhost:8081"
          db: "db"
        exec:
          - cmd: "migrate"
            if-candidate: true
          - cmd: "serve"
        """,
    )
    out = run(litefs_bin, "config", "check", "-config", str(config))
    assert out.returncode == 0, out.stderr


def test_config_check_unknown_key_names_file_and_line(litefs_bin: str, tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        f"""\
        fuse:
          dir: {tmp_path}/mnt
        data:
          dir: {tmp_path}/data
          bar: 1
        lease:
          type: static
        """,
    )
    out = run(litefs_bin, "config", "check", "-config", str(config))
    assert out.returncode == 2
    assert str(config) in out.stderr
    assert f"{config}:5:" in out.stderr  # line of `bar`
    assert "bar" in out.stderr


def test_config_check_unknown_lease_type_lists_installed(litefs_bin: str, tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        f"fuse: {{dir: {tmp_path}/mnt}}\ndata: {{dir: {tmp_path}/data}}\nlease: {{type: zookeeper}}\n",
    )
    out = run(litefs_bin, "config", "check", "-config", str(config))
    assert out.returncode == 2
    assert "zookeeper" in out.stderr
    assert "'static'" in out.stderr and "'consul'" in out.stderr and "'etcd'" in out.stderr


def test_config_check_validation_error(litefs_bin: str, tmp_path: Path) -> None:
    config = write_config(
        tmp_path, f"fuse: {{dir: {tmp_path}/same}}\ndata: {{dir: {tmp_path}/same}}\nlease: {{type: static}}\n"
    )
    out = run(litefs_bin, "config", "check", "-config", str(config))
    assert out.returncode == 2
    assert "fuse directory and data directory cannot be the same path" in out.stderr


def test_config_not_found(litefs_bin: str, tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = run(litefs_bin, "config", "check", cwd=tmp_path, env=env)
    assert out.returncode == 2
    assert "config file not found" in out.stderr


def test_config_found_in_working_directory(litefs_bin: str, tmp_path: Path) -> None:
    write_config(
        tmp_path, f"fuse: {{dir: {tmp_path}/mnt}}\ndata: {{dir: {tmp_path}/data}}\nlease: {{type: static}}\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "nohome")}
    out = run(litefs_bin, "config", "show", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert f"dir: {tmp_path}/data" in out.stdout


def test_config_show_expands_env_and_masks_secrets(litefs_bin: str, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("s3cr3t\n")
    config = write_config(
        tmp_path,
        f"""\
        fuse:
          dir: {tmp_path}/mnt
        data:
          dir: ${{DATA_ROOT}}/data
          retention: 90s
        lease:
          type: static
          candidate: ${{REGION == PRIMARY_REGION}}
        backup:
          type: s3
          auth-token: {{"$file": "{tmp_path}/token"}}
          secret-access-key: {{"$env": "MY_S3_SECRET"}}
        """,
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "DATA_ROOT": str(tmp_path),
        "REGION": "ord",
        "PRIMARY_REGION": "lhr",
        "MY_S3_SECRET": "hunter2",
    }
    out = run(litefs_bin, "config", "show", "-config", str(config), env=env)
    assert out.returncode == 0, out.stderr
    assert f"dir: {tmp_path}/data" in out.stdout
    assert "candidate: false" in out.stdout
    assert "retention: 1m30s" in out.stdout
    assert "s3cr3t" not in out.stdout and "hunter2" not in out.stdout
    assert "********" in out.stdout
    # -no-expand-env leaves the text alone, so the directory is literally "${DATA_ROOT}/data"
    # (and `candidate: ${...}` would not be a boolean, so leave it out here).
    plain = write_config(
        tmp_path, 'fuse: {dir: /mnt/x}\ndata: {dir: "${DATA_ROOT}/data"}\nlease: {type: static}\n'
    )
    raw = run(litefs_bin, "config", "show", "-config", str(plain), "-no-expand-env", env=env)
    assert "${DATA_ROOT}/data" in raw.stdout, raw.stderr


def test_plugins_selection_from_config(litefs_bin: str, tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        f"""\
        fuse: {{dir: {tmp_path}/mnt}}
        data: {{dir: {tmp_path}/data}}
        lease: {{type: static}}
        plugins:
          disable: [proxy]
        proxy:
          target: "localhost:8081"
        """,
    )
    out = run(litefs_bin, "config", "check", "-config", str(config))
    assert out.returncode == 2
    assert "proxy" in out.stderr


def test_plugins_list_table_without_config(litefs_bin: str, tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = run(litefs_bin, "plugins", "list", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].split()[:4] == ["NAME", "DISTRIBUTION", "VERSION", "ENABLED"]
    assert "litefs-lease-static" in out.stdout


def test_plugins_list_hook_filter(litefs_bin: str, tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = run(litefs_bin, "plugins", "list", "--hook", "litefs_register_lease_types", cwd=tmp_path, env=env)
    names = {line.split()[0] for line in out.stdout.splitlines()[1:]}
    assert names == {"lease_static", "lease_consul", "lease_etcd"}


def test_unknown_backup_type_lists_installed(litefs_bin: str, tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        f"fuse: {{dir: {tmp_path}/mnt}}\ndata: {{dir: {tmp_path}/data}}\nlease: {{type: static}}\n"
        "backup: {type: tape}\n",
    )
    out = run(litefs_bin, "config", "check", "-config", str(config))
    assert out.returncode == 2
    assert "invalid backup client type 'tape'; installed backup types: 's3'" in out.stderr
