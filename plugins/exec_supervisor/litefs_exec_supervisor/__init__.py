"""Exec supervisor for litefs-py: runs the app (and its migrations) once the node is ready.

Enabled by ``exec:`` in litefs.yml -- one command line, or a list of ``{cmd, if-candidate}``
entries -- or by a command after ``--`` on ``litefs mount``, which replaces ``exec``.

What it does, as LiteFS v0.5.14 does:

* waits until the node is ready (primary, or caught up with the primary) unless ``skip-sync``;
* splits each command with shell-words rules, without a shell;
* skips ``if-candidate: true`` entries on nodes that are not candidates;
* runs every entry but the last to completion, in order; a failure stops the node, reporting the
  command and its exit code;
* runs the last entry as the app, with stdin closed and stdout/stderr passed through;
* SIGINT/SIGTERM to the node go to the app first; once it has exited the node shuts down and exits 0;
* if the app exits by itself, the node shuts down and exits with the app's code;
* when the node stops for another reason (a fatal error, exit code 99) the app gets SIGTERM and
  is waited for while the mount still answers; FUSE unmounts after it has exited.

Beyond LiteFS, the commands get ``LITEFS_PRIMARY`` (``1``/``0``), ``LITEFS_MOUNT_DIR`` and
``LITEFS_API_URL`` in their environment.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from litefs.hookspecs import hookimpl

log = logging.getLogger("litefs.plugin.exec")

#: How long the app gets to exit after the node forwarded a signal before it is killed.
APP_STOP_TIMEOUT = 30.0


@dataclass
class ExecCommand:
    """One entry of the list form of ``exec``."""

    cmd: str = ""
    if_candidate: bool = False


#: ``exec`` is either one command line or a list of entries; absent means no command.
ExecSection = str | list[ExecCommand] | None


class ExecError(Exception):
    """A command could not be run, or a migration failed."""


def exec_commands(section: ExecSection) -> list[ExecCommand]:
    """Normalise both forms of ``exec`` to a list of entries."""
    if section is None or section == "":
        return []
    if isinstance(section, str):
        return [ExecCommand(cmd=section)]
    return list(section)


def split_command(cmd: str) -> list[str]:
    """Shell-words splitting (quotes and backslashes, no variables, no shell)."""
    try:
        argv = shlex.split(cmd)
    except ValueError as exc:
        raise ExecError(f"cannot parse exec command {cmd!r}: {exc}") from exc
    if not argv:
        raise ExecError("exec command is empty")
    return argv


def command_environment(node: Any) -> dict[str, str]:
    env = dict(os.environ)
    env["LITEFS_PRIMARY"] = "1" if node.is_primary else "0"
    env["LITEFS_MOUNT_DIR"] = node.mount_dir
    env["LITEFS_API_URL"] = node.api_url
    return env


class Supervisor:
    """Runs the ``exec`` entries of one node."""

    def __init__(self, node: Any, entries: list[ExecCommand]) -> None:
        self.node = node
        self.entries = entries

    def runnable_entries(self) -> list[ExecCommand]:
        candidate = self.node.config.lease.candidate
        return [e for e in self.entries if candidate or not e.if_candidate]

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        if not self.node.config.skip_sync:
            await self.node.wait_ready()
        entries = self.runnable_entries()
        if not entries:
            log.info("exec: no command to run on this node")
            return
        try:
            for entry in entries[:-1]:
                await self._run_to_completion(entry.cmd)
            code = await self._run_app(entries[-1].cmd)
        except ExecError as exc:
            log.error("exec: %s", exc)
            self.node.request_shutdown(1)
            return
        log.info("exec: app exited with code %d, shutting down", code)
        self.node.request_shutdown(code)

    async def _run_to_completion(self, cmd: str) -> None:
        argv = split_command(cmd)
        log.info("exec: running %s", cmd)
        try:
            result = await trio.run_process(
                argv, stdin=subprocess.DEVNULL, env=command_environment(self.node), check=False
            )
        except OSError as exc:
            raise ExecError(f"cannot run {cmd!r}: {exc}") from exc
        if result.returncode != 0:
            raise ExecError(f"command {cmd!r} failed with exit code {result.returncode}")

    async def _run_app(self, cmd: str) -> int:
        """Run the app until it exits; forward SIGINT/SIGTERM to it meanwhile."""
        argv = split_command(cmd)
        log.info("exec: starting app %s", cmd)
        try:
            process = await trio.lowlevel.open_process(
                argv, stdin=subprocess.DEVNULL, env=command_environment(self.node)
            )
        except OSError as exc:
            raise ExecError(f"cannot run {cmd!r}: {exc}") from exc
        # The most recently opened signal receiver gets the signal, so while the app runs this one
        # takes SIGINT/SIGTERM from the node's own handler: the app is stopped first, then the node.
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:

                async def forward() -> None:
                    async for signum in signals:
                        log.info("exec: forwarding %s to the app", signal.Signals(signum).name)
                        process.send_signal(signum)
                        # A signalled shutdown is a clean one, whatever code the app dies with.
                        self.node.request_shutdown(0)
                        self._stopping = True

                self._stopping = False
                nursery.start_soon(forward)
                try:
                    code = await process.wait()
                except trio.Cancelled:
                    # The node is going down for another reason: stop the app before unmounting.
                    with trio.CancelScope(shield=True):
                        await self._stop(process)
                    raise
                nursery.cancel_scope.cancel()
        return 0 if self._stopping else _exit_code(code)

    async def _stop(self, process: trio.Process) -> None:
        if process.returncode is not None:
            return
        if not self._stopping:  # a forwarded signal is already on its way: do not send a second one
            process.send_signal(signal.SIGTERM)
        with trio.move_on_after(APP_STOP_TIMEOUT):
            await process.wait()
            return
        log.warning("exec: app did not exit %.0fs after SIGTERM, killing it", APP_STOP_TIMEOUT)
        process.kill()
        await process.wait()


def _exit_code(returncode: int) -> int:
    """A process killed by signal N reports -N; shells report 128 + N, which is what users expect."""
    return 128 - returncode if returncode < 0 else returncode


@hookimpl
def litefs_register_config_sections(register: Callable[[str, object], None]) -> None:
    register("exec", ExecSection)


@hookimpl
def litefs_plugin_enabled(config: Any) -> bool:
    return bool(exec_commands(config.section("exec")))


@hookimpl
def litefs_node_services(node: Any, register: Callable[..., None]) -> None:
    entries = exec_commands(node.config.section("exec"))
    if entries:
        register("exec", Supervisor(node, entries).run)
