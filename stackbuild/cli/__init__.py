"""The ``stackbuild`` command line: plan, build, test, refresh, lock, graph, ls, why, verify,
save, load, schema, init, layers, report, ci.

The top layer. ``cli`` (this module) is the group: the global options, exit codes and
signals. Each command is a module of ``cli/commands/`` that imports what it needs and
is loaded only when it runs (``COMMANDS``), so ``plan --offline`` never pays for the
engine side; the commands pick the implementations (``cli/engines.py``). Every
StackbuildError becomes its message and exit code, never a traceback.
"""

from __future__ import annotations

import sys

from stackbuild.cli.signals import (
    exit_interrupted,
    exit_on_swallowed_interrupt,
    handle_signals,
    ignore_signals_at_exit,
    is_the_program,
    raise_interrupt,
)

if is_the_program():
    handle_signals(exit_interrupted)  # the imports below take a while

# the rest of the imports come after the handlers above (E402 is off for this file)
import atexit
import contextlib
import os
import threading
from pathlib import Path

import click

from stackbuild import __version__
from stackbuild.cli import commands
from stackbuild.cli.common import Context
from stackbuild.errors import EXIT_USAGE, StackbuildError

# command -> (module of stackbuild.cli.commands, function), in --help order
COMMANDS = {
    "plan": ("plan", "plan"),
    "why": ("why", "why"),
    "build": ("build", "build"),
    "test": ("test", "test_command"),
    "refresh": ("build", "refresh_command"),
    "lock": ("lock", "lock_command"),
    "graph": ("graph", "graph"),
    "ls": ("graph", "ls_command"),
    "verify": ("verify", "verify"),
    "save": ("archive", "save_command"),
    "load": ("archive", "load_command"),
    "schema": ("schema", "schema"),
    "init": ("init", "init"),
    "layers": ("layers", "layers_command"),
    "report": ("report", "report_command"),
    "ci": ("ci", "ci"),
}


class _LazyGroup(click.Group):
    """Loads a command's module when the command runs (click's lazy subcommands)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, name = COMMANDS[cmd_name]
        command = commands.load(module, name)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-f",
    "--file",
    "stack_file",
    default="stack.yaml",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The manifest to read.",
)
@click.version_option(__version__, prog_name="stackbuild")
@click.pass_context
def cli(ctx: click.Context, stack_file: Path) -> None:
    """Build hierarchies of container images from one stack.yaml.

    \b
    Examples:
      stackbuild plan                 what would be built, and why
      stackbuild build -j 4           build what changed, 4 at a time
      stackbuild build site --with-descendants
      stackbuild graph --format mermaid
    """
    ctx.obj = Context(stack_file)


def main() -> None:
    atexit.register(ignore_signals_at_exit)
    sys.unraisablehook = exit_on_swallowed_interrupt
    try:
        # inside the try: a signal the moment the handler is set is caught here too
        handle_signals(raise_interrupt)  # SIGTERM too: both are "interrupted", exit 130
        code = _main()
        handle_signals(exit_interrupted)  # ending: a signal now ends at once, still 130
    except KeyboardInterrupt:  # while an error was being reported
        handle_signals(exit_interrupted)
        click.echo("interrupted", err=True)
        code = 130
    if code != 130:
        # what the interpreter's own exit does first: wait for the threads that are not
        # daemons, then the atexit handlers (log files closed, temporary files removed)
        with contextlib.suppress(Exception):
            getattr(threading, "_shutdown", lambda: None)()
        atexit._run_exitfuncs()
    # Then end with os._exit once the output is out, skipping the interpreter's teardown
    # of every module and object, which costs 100-200 ms once the docker SDK is loaded
    # (a third of what stackbuild adds to a one-image build). And for 130: CPython ends a
    # process that has seen a KeyboardInterrupt by SIGINT, even one handled here (seen:
    # -2 instead of 130 in ~3% of runs under load); os._exit ends it with the code itself.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _main() -> int:
    """The command's exit code; every error reported, never a traceback."""
    try:
        code = cli.main(standalone_mode=False)
    except click.exceptions.Abort:  # click's own KeyboardInterrupt (in a prompt)
        handle_signals(exit_interrupted)
        click.echo("interrupted", err=True)
        return 130
    except click.ClickException as error:
        error.show()
        return error.exit_code if error.exit_code else EXIT_USAGE
    except StackbuildError as error:
        click.echo(f"stackbuild: {error}", err=True)
        return error.exit_code
    except KeyboardInterrupt:
        handle_signals(exit_interrupted)
        click.echo("interrupted", err=True)
        return 130
    except BrokenPipeError:
        return 0
    return code if isinstance(code, int) else 0
