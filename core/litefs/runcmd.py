"""``litefs run``: run a command against a node, optionally only on candidates or after promotion.

Flags and messages follow LiteFS v0.5.14 (``cmd/litefs/run.go``).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import click

from litefs import client

_CONTEXT = {"help_option_names": ["-h", "--help", "-help"], "ignore_unknown_options": True}

log = logging.getLogger("litefs.run")


@click.command("run", context_settings=_CONTEXT)
@click.option("-url", "--url", "url", default=client.DEFAULT_URL, show_default=True, help="Node API URL.")
@click.option("-promote", "--promote", "promote", is_flag=True, help="Become primary first.")
@click.option("-if-candidate", "--if-candidate", "if_candidate", is_flag=True, help="Only run on candidates.")
@click.option(
    "-with-halt-lock-on",
    "--with-halt-lock-on",
    "halt_db",
    default="",
    help="Hold the HALT lock of this database.",
)
@click.option("-v", "--v", "verbose", is_flag=True, help="Verbose logging.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def run_command(
    url: str, promote: bool, if_candidate: bool, halt_db: str, verbose: bool, command: tuple[str, ...]
) -> None:
    """Run CMD (after --) against a node: -if-candidate skips non-candidates, -promote takes the primary role."""
    if verbose:
        logging.basicConfig(level=logging.DEBUG)
    if not command:
        raise click.UsageError("no command specified, use '--' before the command")
    if promote and halt_db:
        raise click.UsageError("cannot specify both -promote and -with-halt-lock-on")
    try:
        if if_candidate:
            info = client.info(url)
            if not info.get("candidate"):
                click.echo("node is not a candidate, skipping execution")
                return
        if promote:
            info = client.info(url)
            if not info.get("isPrimary"):
                log.debug("promoting node at %s", url)
                client.promote(url)
    except client.ClientError as exc:
        raise click.ClickException(str(exc)) from exc
    lock_fd = -1
    if halt_db:
        try:
            lock_fd = client.open_halt_lock(halt_db)
        except client.ClientError as exc:
            raise click.ClickException(str(exc)) from exc
        log.debug("halt lock acquired on %s", halt_db)
    try:
        code = _call(command, lock_fd)
    finally:
        if lock_fd >= 0:
            client.close_halt_lock(lock_fd)
    sys.exit(code)


def _call(command: tuple[str, ...], lock_fd: int) -> int:
    """Run the command with stdio inherited; the HALT lock file, if any, is its fd 3 (as LiteFS)."""
    preexec = None
    pass_fds: tuple[int, ...] = ()
    if lock_fd >= 0:
        pass_fds = (3,)

        def preexec() -> None:  # in the child, before exec
            if lock_fd != 3:
                os.dup2(lock_fd, 3, inheritable=True)
            else:
                os.set_inheritable(3, True)

    try:
        return subprocess.call(list(command), pass_fds=pass_fds, preexec_fn=preexec)
    except OSError as exc:
        raise click.ClickException(f"cannot run {command[0]!r}: {exc}") from exc
