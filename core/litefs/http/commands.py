"""``litefs import`` and ``litefs export``: copy a database into or out of a running node over HTTP.

Flags and messages follow LiteFS v0.5.14 (``cmd/litefs/import.go``, ``export.go``).
"""

from __future__ import annotations

import os
import time

import click
import httpx

from litefs.durations import format_duration_ns
from litefs.store.fsutil import fsync_dir

DEFAULT_URL = "http://localhost:20202"

_CONTEXT = {"help_option_names": ["-h", "--help", "-help"]}


def _fail(message: str) -> None:
    raise click.ClickException(message)


def _error_text(resp: httpx.Response) -> str:
    return resp.text.strip() or f"HTTP {resp.status_code}"


@click.command("import", context_settings=_CONTEXT)
@click.option("-name", "--name", "name", default="", help="Database name in the mount.")
@click.option("-url", "--url", "url", default=DEFAULT_URL, show_default=True, help="Node API URL.")
@click.argument("path", required=False)
def import_command(name: str, url: str, path: str | None) -> None:
    """Import a SQLite database file into a node (creating or replacing the database)."""
    if not path:
        raise click.UsageError("path required")
    if not name:
        raise click.UsageError("database name required")
    started = time.monotonic_ns()
    try:
        with open(path, "rb") as f:
            resp = httpx.post(
                url.rstrip("/") + "/import",
                params={"name": name},
                content=iter(lambda: f.read(1 << 20), b""),
                timeout=None,
            )
    except FileNotFoundError:
        _fail(f"open {path}: no such file or directory")
    except httpx.HTTPError as exc:
        _fail(f"import: {exc}")
    if resp.status_code != 200:
        _fail(f"import: {_error_text(resp)}")
    click.echo(f'Import of database "{name}" in {format_duration_ns(time.monotonic_ns() - started)}')


@click.command("export", context_settings=_CONTEXT)
@click.option("-name", "--name", "name", default="", help="Database name in the mount.")
@click.option("-url", "--url", "url", default=DEFAULT_URL, show_default=True, help="Node API URL.")
@click.argument("path", required=False)
def export_command(name: str, url: str, path: str | None) -> None:
    """Export a database from a node into a local SQLite file (replacing it and its journals)."""
    if not path:
        raise click.UsageError("path required")
    if not name:
        raise click.UsageError("database name required")
    started = time.monotonic_ns()
    # The old file and its journals go first, so a stale -journal/-wal can never be replayed onto the
    # exported content.
    for suffix in ("", "-journal", "-wal", "-shm"):
        try:
            os.unlink(path + suffix)
        except FileNotFoundError:
            pass
    tmp = path + ".tmp"
    try:
        with httpx.stream("GET", url.rstrip("/") + "/export", params={"name": name}, timeout=None) as resp:
            if resp.status_code != 200:
                resp.read()
                _fail(f"export: {_error_text(resp)}")
            with open(tmp, "wb") as f:
                for chunk in resp.iter_bytes(1 << 20):
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
        os.rename(tmp, path)
        fsync_dir(os.path.dirname(os.path.abspath(path)))
    except httpx.HTTPError as exc:
        _fail(f"export: {exc}")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    click.echo(f'Export of database "{name}" in {format_duration_ns(time.monotonic_ns() - started)}')
