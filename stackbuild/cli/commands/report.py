"""``stackbuild report -o report.html`` and the pictures of ``graph --format svg|png``:
what the engine, the run log and Graphviz say, put together by ``stackbuild.report``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import click

from stackbuild import report
from stackbuild.analyze import Analysis, analyze
from stackbuild.cli.commands.layers import stack_layers
from stackbuild.cli.common import Context, pass_context, warn
from stackbuild.cli.engines import existing_on, plan_engines
from stackbuild.errors import EngineUnreachable, UsageError
from stackbuild.files import atomic_write
from stackbuild.layers import StackAccount
from stackbuild.manifest import load_stack
from stackbuild.plan import Plan
from stackbuild.run.upstream import pinned_analysis

DOT_TIMEOUT = 120  # s: Graphviz lays out thousands of nodes in seconds
NO_DOT = (
    "Graphviz's dot is not installed, and it draws --format {fmt}: "
    "install the Debian package graphviz (apt-get install graphviz)"
)


@dataclass
class Picture:
    """What is known now: the plan (the engine asked, else offline), the last run, and
    the layers of the images built at their fingerprint (None without an engine)."""

    analysis: Analysis
    plan: Plan | None
    run: list[report.RunEntry]
    account: StackAccount | None
    notes: list[str] = field(default_factory=list)

    @property
    def states(self) -> dict[str, str]:
        return report.node_states(self.plan, self.run)

    @property
    def own_bytes(self) -> dict[str, int]:
        images = self.account.images if self.account else ()
        return {image.name: image.own_bytes for image in images}


def gather(stack_file: Path) -> Picture:
    notes = []
    try:
        stack = load_stack(stack_file)
        backend, pool = plan_engines(stack)
        analysis = pinned_analysis(stack, (), False, backend, write=False, warn=warn)
        plan = analysis.plan(existing_on(analysis, backend, pool).where())
        account: StackAccount | None = stack_layers(analysis, backend)
    except EngineUnreachable as error:
        analysis = analyze(stack_file)
        plan, account = analysis.plan(None), None
        notes.append(f"offline: {error}; every image is shown as to build, with no layer data")
    try:
        log_text = (analysis.state.logs / "stackbuild.log").read_text("utf-8", "replace")
    except OSError:
        log_text = ""
    return Picture(analysis, plan, report.last_run(log_text), account, notes)


def run_dot(dot_source: str, fmt: str) -> bytes:
    """``dot -T<fmt>`` of ``dot_source``; a clear error naming the package when missing."""
    dot = shutil.which("dot")
    if dot is None:
        raise UsageError(NO_DOT.format(fmt=fmt))
    try:
        done = subprocess.run(
            [dot, f"-T{fmt}"], input=dot_source.encode(), capture_output=True,
            timeout=DOT_TIMEOUT, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise UsageError(f"Graphviz's dot failed: {error}") from None
    if done.returncode != 0:
        raise UsageError(f"Graphviz's dot failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def graph_picture(stack_file: Path, fmt: str) -> None:
    """``graph --format svg|png``: the styled graph drawn by Graphviz, on stdout."""
    if shutil.which("dot") is None:  # before asking the engine anything
        raise UsageError(NO_DOT.format(fmt=fmt))
    picture = gather(stack_file)
    for note in picture.notes:
        warn(f"stackbuild: {note}")
    source = report.styled_dot(picture.analysis.graph, picture.states, picture.own_bytes)
    drawn = run_dot(source, fmt)
    sys.stdout.flush()
    sys.stdout.buffer.write(drawn)
    sys.stdout.buffer.flush()


@click.command(name="report")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default="report.html",
    show_default=True, help="The HTML file to write.",
)
@pass_context
def report_command(ctx: Context, output: Path) -> int:
    """Write one self-contained HTML page: the graph coloured by plan action, the last
    run's statuses and its timeline per engine slot, and the layer table.

    Without an engine the page shows the offline plan and no layers; without Graphviz
    the graph is drawn level by level.
    """
    picture = gather(ctx.stack_file)
    graph = picture.analysis.graph
    if shutil.which("dot"):
        source = report.styled_dot(graph, picture.states, picture.own_bytes)
        svg = run_dot(source, "svg").decode("utf-8", "replace")
    else:
        svg = report.layered_svg(graph, picture.states, picture.own_bytes)
        picture.notes.append("drawn without Graphviz (Debian package graphviz)")
    page = report.report_html(
        f"stackbuild report: {picture.analysis.stack.display_path}", svg, picture.plan,
        picture.run, picture.account, picture.notes, graph=graph,
    )
    atomic_write(output, page.encode())
    click.echo(f"wrote {output}")
    return 0
