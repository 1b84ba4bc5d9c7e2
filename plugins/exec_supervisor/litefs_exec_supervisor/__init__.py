"""Exec supervisor for litefs-py, enabled by ``exec:`` in litefs.yml or a command after ``--``.

Status: the ``exec`` section (a string, or a list of ``{cmd, if-candidate}``) is registered and
validated; running the commands is not built yet (the node logs that it is skipped).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from litefs.hookspecs import hookimpl

log = logging.getLogger("litefs.plugin.exec")


@dataclass
class ExecCommand:
    """One entry of the list form of ``exec``."""

    cmd: str = ""
    if_candidate: bool = False


#: ``exec`` is either one command line or a list of entries; absent means no command.
ExecSection = str | list[ExecCommand] | None


def exec_commands(section: ExecSection) -> list[ExecCommand]:
    """Normalise both forms of ``exec`` to a list of entries."""
    if section is None or section == "":
        return []
    if isinstance(section, str):
        return [ExecCommand(cmd=section)]
    return list(section)


@hookimpl
def litefs_register_config_sections(register: Callable[[str, object], None]) -> None:
    register("exec", ExecSection)


@hookimpl
def litefs_plugin_enabled(config) -> bool:  # noqa: ANN001
    return bool(exec_commands(config.section("exec")))


@hookimpl
def litefs_node_services(node, register) -> None:  # noqa: ANN001
    if exec_commands(node.config.section("exec")):
        log.warning("exec is configured but the supervisor is not implemented yet in this build; skipping")
