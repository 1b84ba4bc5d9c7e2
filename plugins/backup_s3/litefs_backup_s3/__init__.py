"""Backups with point-in-time restore to S3-compatible storage (``backup.type: s3``).

This plugin owns the whole ``backup`` section, which keeps every key LiteFS v0.5.14 accepts
(``type``, ``path``, ``url``, ``cluster``, ``auth-token``) so existing litefs.yml files still load,
and adds the S3 keys. Status: the section is registered and validated; uploading is not built yet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

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


@hookimpl
def litefs_register_config_sections(register: Callable[[str, object], None]) -> None:
    register("backup", BackupConfig)


def _not_built(node, section):  # noqa: ANN001, ANN202
    raise NotImplementedError("the s3 backup uploader is not implemented yet in this build of litefs-py")


@hookimpl
def litefs_register_backup_types(register: Callable[..., None]) -> None:
    register("s3", _not_built)


@hookimpl
def litefs_plugin_enabled(config) -> bool:  # noqa: ANN001
    return config.section("backup").type == "s3"
