"""The ``litefs`` command line.

Flags follow LiteFS v0.5.14 (Go style, single dash: ``litefs mount -config PATH``); the double-dash
spelling works too. Exit codes: 0 ok, 1 runtime error or unknown command, 2 usage or config error,
99 fatal error while committing or applying a transaction, or the exit code of the ``exec`` app.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from dataclasses import dataclass, field
from typing import Any

import click

import litefs
from litefs.plugins import PluginError, PluginRegistry, load_plugins

EXIT_USAGE = 2


class ConfigUsageError(click.ClickException):
    """A config or validation problem: LiteFS exits 2 for these."""

    exit_code = EXIT_USAGE


@dataclass
class PluginsConfig:
    """``plugins`` in litefs.yml: which installed plugins this node loads (by entry-point name)."""

    enable: list[str] | None = None
    """Load only these (absent: load every installed plugin)."""
    disable: list[str] = field(default_factory=list)


def build_registry(**kwargs: Any) -> PluginRegistry:
    try:
        registry = load_plugins(**kwargs)
    except PluginError as exc:
        raise click.ClickException(str(exc)) from exc
    registry._add_section("plugins", PluginsConfig, "litefs (core)")
    return registry


def load_node_config(config_path: str | None, no_expand_env: bool) -> tuple[Any, PluginRegistry]:
    """Find and load litefs.yml with the sections of every enabled plugin.

    Plugin selection can itself come from the file (``plugins.enable`` / ``plugins.disable``), so
    when it does the registry is rebuilt with that selection and the file is loaded once more.
    """
    from litefs.config import ConfigError, find_config_path, load_config

    registry = build_registry()
    try:
        path = find_config_path(config_path)
        config = load_config(path, expand=not no_expand_env, sections=registry.sections)
        selection = config.section("plugins")
        if selection.enable is not None or selection.disable:
            registry = build_registry(enable=selection.enable, disable=selection.disable)
            config = load_config(path, expand=not no_expand_env, sections=registry.sections)
        if config.lease.type:
            registry.lease_type(config.lease.type)
        if "backup" in registry.sections:
            registry.backup_type(getattr(config.section("backup"), "type", ""))
    except ConfigError as exc:
        raise ConfigUsageError(str(exc)) from exc
    except PluginError as exc:
        raise ConfigUsageError(str(exc)) from exc
    return config, registry


class LiteFSGroup(click.Group):
    """A click group that answers an unknown command the way LiteFS does (exit 1)."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            click.echo(f"litefs {name}: unknown command", err=True)
            ctx.exit(1)
        return super().resolve_command(ctx, args)


CONTEXT = {"help_option_names": ["-h", "--help", "-help"]}


@click.group(cls=LiteFSGroup, context_settings=CONTEXT, invoke_without_command=True)
@click.pass_context
def cli(ctx: click.Context) -> None:
    """litefs-py: distributed SQLite through a FUSE file system."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help(), err=True)
        ctx.exit(EXIT_USAGE)


@cli.command("version")
def version_command() -> None:
    """Print the version."""
    click.echo(f"LiteFS {litefs.__version__} (litefs-py)")


# --- plugins ----------------------------------------------------------------------------------


@cli.group("plugins", context_settings=CONTEXT)
def plugins_group() -> None:
    """Inspect installed plugins."""


@plugins_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--hook", "hook_name", default=None, help="Only plugins implementing this hook.")
@click.option("-config", "--config", "config_path", default=None, help="litefs.yml to judge 'enabled' by.")
def plugins_list(as_json: bool, hook_name: str | None, config_path: str | None) -> None:
    """List installed plugins: name, distribution, version, hooks, enabled by the config."""
    from litefs.config import ConfigError, find_config_path, load_config

    registry = build_registry()
    config = None
    try:
        path = find_config_path(config_path)
        config = load_config(path, sections=registry.sections)
    except ConfigError as exc:
        if config_path is not None:  # an explicit file must load; the search path may find nothing
            raise ConfigUsageError(str(exc)) from exc
    rows = registry.list_plugins(config)
    if hook_name:
        rows = [r for r in rows if hook_name in r.hooks]
    if as_json:
        click.echo(json.dumps([r.to_json() for r in rows], indent=2))
        return
    if not rows:
        click.echo("no plugins installed")
        return
    table = [("NAME", "DISTRIBUTION", "VERSION", "ENABLED", "HOOKS")]
    for r in rows:
        enabled = "-" if r.enabled is None else ("yes" if r.enabled else "no")
        hooks = ",".join(h.removeprefix("litefs_") for h in r.hooks)
        table.append((r.name, r.distribution, r.version, enabled, hooks))
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        click.echo("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4])


# --- config -----------------------------------------------------------------------------------


@cli.group("config", context_settings=CONTEXT)
def config_group() -> None:
    """Inspect litefs.yml."""


_config_option = click.option("-config", "--config", "config_path", default=None, help="Path to litefs.yml.")
_no_expand_option = click.option(
    "-no-expand-env", "--no-expand-env", "no_expand_env", is_flag=True, help="Do not expand $VAR in the file."
)


@config_group.command("show")
@_config_option
@_no_expand_option
def config_show(config_path: str | None, no_expand_env: bool) -> None:
    """Print the effective config (expanded, with defaults) as YAML, secrets masked."""
    from litefs.config import dump_yaml

    config, _ = load_node_config(config_path, no_expand_env)
    click.echo(dump_yaml(config), nl=False)


@config_group.command("check")
@_config_option
@_no_expand_option
def config_check(config_path: str | None, no_expand_env: bool) -> None:
    """Validate litefs.yml: exit 0 when valid, 2 with the reason otherwise."""
    load_node_config(config_path, no_expand_env)
    click.echo("config ok")


# --- mount ------------------------------------------------------------------------------------


@cli.command("mount", context_settings={**CONTEXT, "ignore_unknown_options": False})
@_config_option
@_no_expand_option
@click.option("-skip-unmount", "--skip-unmount", is_flag=True, help="Do not unmount a stale mount first.")
@click.option("-fuse.debug", "--fuse.debug", "fuse_debug", is_flag=True, help="Log every FUSE request.")
@click.option("-debug", "--debug", "debug", is_flag=True, help="Debug logging.")
@click.option("-tracing", "--tracing", "tracing", is_flag=True, help="Trace log to stdout.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def mount_command(
    config_path: str | None,
    no_expand_env: bool,
    skip_unmount: bool,
    fuse_debug: bool,
    debug: bool,
    tracing: bool,
    command: tuple[str, ...],
) -> None:
    """Mount the file system and run the node (optionally: -- CMD ARGS to run the app)."""
    dashdash = "--" in sys.argv
    if command and not dashdash:
        raise click.UsageError("too many arguments, specify a '--' to specify an exec command")
    config, registry = load_node_config(config_path, no_expand_env)
    if command:
        # The words after -- replace `exec`. LiteFS joins them with bare spaces, which loses quoting
        # (`-- sh -c "exit 5"` would run `sh -c exit 5`); quoting each word keeps them as given.
        config.sections["exec"] = shlex.join(command)
    if fuse_debug:
        config.fuse.debug = True
    if debug:
        config.log.debug = True

    from litefs.log import setup_logging

    setup_logging(format=config.log.format, timestamp=config.log.timestamp, debug=config.log.debug)
    click.echo(f"LiteFS {litefs.__version__} (litefs-py)", err=True)
    try:
        from litefs.node import run_mount
    except ImportError as exc:  # pragma: no cover - only while the FUSE layer is missing
        raise click.ClickException(f"mount is not available in this build: {exc}") from exc
    sys.exit(run_mount(config, registry, skip_unmount=skip_unmount))


def _register_optional_commands() -> None:
    """Attach commands whose modules are optional parts of the core."""
    try:
        from litefs.ltx.cli import ltx_group
    except ImportError:
        pass
    else:
        cli.add_command(ltx_group, "ltx")
    from litefs.runcmd import run_command

    cli.add_command(run_command, "run")
    try:
        from litefs.http.commands import export_command, import_command
    except ImportError:
        pass
    else:
        cli.add_command(import_command, "import")
        cli.add_command(export_command, "export")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    _register_optional_commands()
    # Plugin commands: a broken plugin must not make the whole CLI unusable, only say so.
    if os.environ.get("LITEFS_LOAD_PLUGINS") != "":
        try:
            registry = load_plugins()
            registry.hook.litefs_register_commands(cli=cli)
        except PluginError as exc:
            click.echo(f"warning: {exc}", err=True)
    cli.main(args=argv, prog_name="litefs")
