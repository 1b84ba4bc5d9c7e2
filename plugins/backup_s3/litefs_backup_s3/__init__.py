"""Continuous backups with point-in-time restore to S3-compatible storage (``backup.type: s3``).

This plugin owns the whole ``backup`` section, which keeps every key LiteFS v0.5.14 accepts
(``type``, ``path``, ``url``, ``cluster``, ``auth-token``) so existing litefs.yml files still load,
and adds the S3 keys::

    backup:
      type: s3
      endpoint: http://127.0.0.1:8333      # path-style S3 API
      bucket: litefs-backups
      prefix: prod/app                     # optional
      region: us-east-1
      access-key-id: {$env: AWS_ACCESS_KEY_ID}
      secret-access-key: {$env: AWS_SECRET_ACCESS_KEY}
      upload-delay: 1s                     # batch commits this close together into one object
      snapshot-interval: 1h                # add a snapshot this often (0: only when needed)
      retention: 0s                        # delete what only restores older than this need (0: keep)

Layout in the bucket (see :mod:`litefs_backup_s3.layout`)::

    <prefix>/<db>/ltx/<min>-<max>.ltx       compacted consecutive transactions
    <prefix>/<db>/snapshots/<txid>.ltx      snapshot LTX files (every page at that TXID)

The uploader (:mod:`litefs_backup_s3.uploader`) runs only while the node is primary. Restores are
``litefs backup list`` / ``litefs backup restore`` (:mod:`litefs_backup_s3.cli`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from litefs.hookspecs import hookimpl


@dataclass
class BackupConfig:
    """``backup`` in litefs.yml."""

    type: str = ""
    path: str = ""
    url: str = "https://litefs.fly.io"
    cluster: str = ""
    auth_token: str = field(default="", metadata={"secret": True})
    # S3-compatible storage (type: s3)
    endpoint: str = ""
    bucket: str = ""
    prefix: str = ""
    region: str = "us-east-1"
    access_key_id: str = field(default="", metadata={"secret": True})
    secret_access_key: str = field(default="", metadata={"secret": True})
    upload_delay: float = field(default=1.0, metadata={"duration": True})
    snapshot_interval: float = field(default=3600.0, metadata={"duration": True})
    retention: float = field(default=0.0, metadata={"duration": True})


# One uploader per node object (a process normally runs one node).
_UPLOADERS: dict[int, Any] = {}


def _uploader(node: Any, section: Any) -> Any:
    from litefs_backup_s3.uploader import Uploader

    up = _UPLOADERS.get(id(node))
    if up is None or up.node is not node:
        up = _UPLOADERS[id(node)] = Uploader(node, section)
    return up


def make_service(node: Any, section: Any) -> Callable[..., Any]:
    """The backup-type factory: the uploader's ``run(task_status)`` for this node."""
    return _uploader(node, section).run


@hookimpl
def litefs_register_config_sections(register: Callable[[str, object], None]) -> None:
    register("backup", BackupConfig)


@hookimpl
def litefs_register_backup_types(register: Callable[..., None]) -> None:
    register("s3", make_service)


@hookimpl
def litefs_tx_committed(node: Any, event: Any) -> None:
    up = _UPLOADERS.get(id(node))
    if up is not None and up.node is node:
        up.on_tx(event)


@hookimpl
def litefs_primary_changed(node: Any, event: Any) -> None:
    up = _UPLOADERS.get(id(node))
    if up is not None and up.node is node:
        up.on_primary_changed(event)


@hookimpl
def litefs_register_commands(cli: Any) -> None:
    from litefs_backup_s3.cli import backup_group

    cli.add_command(backup_group, "backup")


@hookimpl
def litefs_plugin_enabled(config) -> bool:  # noqa: ANN001
    return config.section("backup").type == "s3"
