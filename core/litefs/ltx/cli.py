"""``litefs ltx``: inspect, verify, checksum, apply and create LTX files.

Wired into the main CLI elsewhere (``from litefs.ltx.cli import ltx_group``). Exit codes: 0 success,
1 invalid input (bad LTX file, checksum mismatch, unreadable file), 2 usage error.
"""

from __future__ import annotations

import json
import os
import sys

import click

from litefs.ltx.apply import apply_ltx, read_sqlite_geometry, write_snapshot
from litefs.ltx.checksum import database_checksum, page_checksum
from litefs.ltx.decoder import Decoder, peek_header
from litefs.ltx.errors import LTXError
from litefs.ltx.header import Header
from litefs.ltx.pos import Pos
from litefs.ltx.tracker import ChecksumTracker

_FILE = click.Path(exists=True, dir_okay=False)


@click.group("ltx")
def ltx_group() -> None:
    """Work with LTX v1 files (the LiteFS transaction file format)."""


@ltx_group.command("dump")
@click.argument("file", type=_FILE)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def dump(file: str, as_json: bool) -> None:
    """Print the header, the page numbers (with page checksums) and the trailer of FILE."""
    pages: list[dict[str, object]] = []
    header = None
    error = None
    trailer = None
    try:
        with open(file, "rb") as f:
            dec = Decoder(f)
            header = dec.header
            if not as_json:
                _print_header(header)
            for pgno, data in dec.pages():
                cksum = f"{page_checksum(pgno, data):016x}"
                pages.append({"pgno": pgno, "checksum": cksum})
                if not as_json:
                    click.echo(f"page {pgno:<10d} checksum {cksum}")
            trailer = dec.trailer
    except (LTXError, OSError) as exc:
        error = str(exc)
    if as_json:
        obj: dict[str, object] = {
            "header": header.to_json() if header else None,
            "pages": pages,
            "trailer": None,
        }
        if trailer is not None:
            obj["trailer"] = {
                "postApplyChecksum": f"{trailer.post_apply_checksum:016x}",
                "fileChecksum": f"{trailer.file_checksum:016x}",
            }
        if error is not None:
            obj["error"] = error
        click.echo(json.dumps(obj, indent=2))
    elif trailer is not None:
        click.echo(f"post-apply checksum   {trailer.post_apply_checksum:016x}")
        click.echo(f"file checksum         {trailer.file_checksum:016x}")
    if error is not None:
        click.echo(f"{file}: {error}", err=True)
        sys.exit(1)


def _print_header(h: Header) -> None:
    click.echo(f"flags                 0x{h.flags:08x}{' (lz4)' if h.compressed else ''}")
    click.echo(f"page size             {h.page_size}")
    click.echo(f"commit                {h.commit}")
    click.echo(
        f"min TXID              {h.min_txid:016x} ({h.min_txid}){' snapshot' if h.is_snapshot else ''}"
    )
    click.echo(f"max TXID              {h.max_txid:016x} ({h.max_txid})")
    click.echo(f"timestamp             {h.timestamp} ms")
    click.echo(f"pre-apply checksum    {h.pre_apply_checksum:016x}")
    click.echo(f"WAL offset / size     {h.wal_offset} / {h.wal_size}")
    click.echo(f"WAL salts             {h.wal_salt1:08x} / {h.wal_salt2:08x}")
    click.echo(f"node ID               {h.node_id:016x}")


@ltx_group.command("verify")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def verify(files: tuple[str, ...]) -> None:
    """Check every FILE completely (structure, page order, file and snapshot checksums).

    Prints ``FILE: ok`` for each valid file and ``FILE: reason`` (on stderr) for each bad one; exits 1
    if any file is bad.
    """
    bad = 0
    for name in files:
        try:
            with open(name, "rb") as f:
                Decoder(f).verify()
        except (LTXError, OSError) as exc:
            bad += 1
            click.echo(f"{name}: {exc}", err=True)
        else:
            click.echo(f"{name}: ok")
    if bad:
        sys.exit(1)


@ltx_group.command("checksum")
@click.argument("dbfile", type=_FILE)
def checksum(dbfile: str) -> None:
    """Print the database checksum of a plain SQLite file, as LiteFS computes it (%016x)."""
    try:
        page_size, count = read_sqlite_geometry(dbfile)
        value = database_checksum(dbfile, page_size, count)
    except (LTXError, OSError) as exc:
        raise click.ClickException(f"{dbfile}: {exc}") from None
    click.echo(f"{value:016x}")


@ltx_group.command("apply")
@click.argument("files", nargs=-1, required=True, type=_FILE)
@click.argument("dbfile", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Skip the pre-apply / post-apply database checksum checks.")
def apply(files: tuple[str, ...], dbfile: str, force: bool) -> None:
    """Apply LTX FILEs in order to DBFILE (created if missing).

    Each file is verified before it is written. Unless --force, the database must be at each
    incremental file's pre-apply checksum and must reach its post-apply checksum.
    """
    tracker: ChecksumTracker | None = None
    for name in files:
        try:
            with open(name, "rb") as f:
                header = peek_header(f)
            if not force and tracker is None and not header.is_snapshot:
                size = os.path.getsize(dbfile) if os.path.exists(dbfile) else 0
                tracker = (
                    ChecksumTracker.from_file(dbfile, header.page_size, size // header.page_size)
                    if size
                    else ChecksumTracker(header.page_size)
                )
            elif not force and tracker is None:
                tracker = ChecksumTracker(header.page_size)
            h, t = apply_ltx(name, dbfile, tracker=tracker)
        except (LTXError, OSError) as exc:
            raise click.ClickException(f"{name}: {exc}") from None
        click.echo(f"{name}: applied, position {Pos(h.max_txid, t.post_apply_checksum)}")


@ltx_group.command("encode-db")
@click.argument("dbfile", type=_FILE)
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--txid", type=click.IntRange(1, (1 << 64) - 1), default=1, show_default=True, help="Max TXID.")
@click.option("--no-compress", is_flag=True, help="Write an uncompressed file (flags 0).")
@click.option("--node-id", type=click.IntRange(0, (1 << 64) - 1), default=0, help="Node ID for the header.")
def encode_db(dbfile: str, out: str, txid: int, no_compress: bool, node_id: int) -> None:
    """Write a snapshot LTX file (TXIDs 1..--txid) of the SQLite file DBFILE to OUT."""
    tmp = f"{out}.tmp"
    try:
        with open(tmp, "wb") as f:
            h, t = write_snapshot(dbfile, f, txid=txid, compress=not no_compress, node_id=node_id)
        os.replace(tmp, out)
    except (LTXError, OSError) as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise click.ClickException(f"{dbfile}: {exc}") from None
    click.echo(f"{out}: {h.commit} pages, position {Pos(h.max_txid, t.post_apply_checksum)}")
