"""``litefs backup list`` and ``litefs backup restore``: read an S3 backup without a running node."""

from __future__ import annotations

import datetime as _dt
import sys
from typing import Any

import click
import trio

from litefs.ltx import LTXError
from litefs_backup_s3.layout import RemoteDB, list_remote, read_end_pos, read_header
from litefs_backup_s3.restore import RestoreError, restore
from litefs_backup_s3.s3 import S3Client, S3Error

CONTEXT = {"help_option_names": ["-h", "--help", "-help"]}


def _section(config_path: str | None) -> Any:
    from litefs.cli import load_node_config

    config, _ = load_node_config(config_path, False)
    section = config.section("backup")
    if section.type != "s3":
        raise click.ClickException(f"backup.type is {section.type!r} in the config, not 's3'")
    return section


def _client(section: Any) -> S3Client:
    return S3Client(
        section.endpoint,
        section.bucket,
        region=section.region,
        access_key_id=section.access_key_id,
        secret_access_key=section.secret_access_key,
    )


def parse_txid_arg(text: str) -> int:
    """A TXID given as decimal, ``0x`` hex, or LiteFS's 16 hex digits."""
    try:
        if len(text) == 16:
            return int(text, 16)
        return int(text, 0)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a TXID (decimal, 0x-hex or 16 hex digits)") from None


def parse_timestamp_arg(text: str) -> int:
    """An RFC 3339 time (``2024-01-02T03:04:05Z``, offsets and fractions allowed) in ms since the epoch."""
    try:
        when = _dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an RFC 3339 time such as 2024-01-02T03:04:05Z") from None
    if when.tzinfo is None:
        raise click.BadParameter(f"{text!r} has no time zone (add Z or an offset such as +02:00)")
    return int(when.timestamp() * 1000)


def _fmt_ms(ms: int) -> str:
    when = _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _run(fn: Any, *args: Any) -> Any:
    try:
        return trio.run(fn, *args)
    except (S3Error, RestoreError, LTXError) as exc:
        raise click.ClickException(str(exc)) from exc


@click.group("backup", context_settings=CONTEXT)
def backup_group() -> None:
    """Inspect and restore S3 backups (backup.type: s3)."""


@backup_group.command("list")
@click.option("-config", "--config", "config_path", default=None, help="Path to litefs.yml.")
@click.option("-name", "--name", "name", default=None, help="Only this database.")
def list_command(config_path: str | None, name: str | None) -> None:
    """Show each backed-up database: position, TXID and time range, snapshots."""
    section = _section(config_path)

    async def main() -> None:
        async with _client(section) as client:
            dbs = await list_remote(client, section.prefix, name)
            if name is not None and name not in dbs:
                raise RestoreError(f"no backup of database {name!r} under prefix {section.prefix!r}")
            if not dbs:
                click.echo("no backups")
            for db in sorted(dbs):
                await _describe(client, dbs[db])

    _run(main)


async def _describe(client: S3Client, rdb: RemoteDB) -> None:
    points = rdb.boundaries()
    newest = rdb.newest()
    assert newest is not None
    pos = await read_end_pos(client, newest)
    first = await read_header(client, points[0].key)
    last = await read_header(client, newest.key)
    click.echo(f"{rdb.name}")
    click.echo(f"  position:   {pos}")
    click.echo(f"  txids:      {points[0].min_txid}..{pos.txid} ({len(rdb.ltx)} ltx objects)")
    click.echo(f"  time range: {_fmt_ms(first.timestamp)} .. {_fmt_ms(last.timestamp)}")
    if rdb.snapshots:
        for s in rdb.snapshots:
            click.echo(f"  snapshot:   txid {s.max_txid} ({s.size} bytes, uploaded {s.last_modified})")
    else:
        click.echo("  snapshots:  none")


@backup_group.command("restore")
@click.option("-config", "--config", "config_path", default=None, help="Path to litefs.yml.")
@click.option("-name", "--name", "name", required=True, help="Database to restore.")
@click.option("-txid", "--txid", "txid", default=None, help="Restore to exactly this TXID.")
@click.option("-timestamp", "--timestamp", "timestamp", default=None, help="Restore to this RFC 3339 time.")
@click.argument("output")
def restore_command(
    config_path: str | None, name: str, txid: str | None, timestamp: str | None, output: str
) -> None:
    """Rebuild a database from its backup into OUTPUT (a plain SQLite file)."""
    if txid is not None and timestamp is not None:
        raise click.UsageError("use -txid or -timestamp, not both")
    target_txid = parse_txid_arg(txid) if txid is not None else None
    target_ms = parse_timestamp_arg(timestamp) if timestamp is not None else None
    section = _section(config_path)

    async def main() -> Any:
        async with _client(section) as client:
            return await restore(
                client, section.prefix, name, output, txid=target_txid, timestamp_ms=target_ms
            )

    result = _run(main)
    click.echo(
        f"restored {name} to TXID {result.pos.txid} ({result.pos}, {_fmt_ms(result.timestamp_ms)}) "
        f"from {len(result.files)} objects into {output}",
        file=sys.stdout,
    )
