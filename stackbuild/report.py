"""Pictures of a stack: the graph styled by plan action and own bytes, the last run
as a Gantt chart per engine slot, and ``stackbuild report``'s one self-contained page.

Pure: from the graph, a plan, the run log's text and the layer accounting to DOT, SVG
and HTML strings. The commands run Graphviz and write the files.

The last run is read back from the run log (``.stackbuild/logs/stackbuild.log``, lines
``<time> build <image> <fingerprint> on <engine>`` when a build starts and ``<time>
<status> <image> [error]`` when it ends, after ``<time> run: ...``; see run/build.py).
The log names the engine but not the slot of the engine a build ran in: the chart's
lanes are rebuilt by putting each build in the first lane of its engine free at its
start, which is what the slots did when every slot was busy.

The chart marks the run's critical path (``critical_path``): from the image that
finished last back through the in-stack parent each one waited for, until an image
started later than its parents allowed: it waited for a slot, drawn as a dashed gap.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from stackbuild.graph import StackGraph
from stackbuild.layers import StackAccount
from stackbuild.plan import BUILD, Plan
from stackbuild.render import graph_dot, human_bytes

# fill colours by what the plan (or the last run) says of an image
COLOURS = {
    "build": "#f6c26b",  # to build
    "skip": "#9ad29a",  # up to date
    "failed": "#ec7f7f",  # failed in the last run, still to build
    "built": "#9ad29a",
    "test-failed": "#ec7f7f",  # built, a check failed
    "tested": "#9ad29a",  # built earlier, its checks passed now
    "blocked": "#cfcfcf",
    "cancelled": "#cfcfcf",
    "up-to-date": "#d7ecd7",
}
_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) (.*)$")
_START = re.compile(r"^build (\S+) (\S+) on (.+)$")
_ENDS = ("built", "failed", "blocked", "cancelled", "test-failed", "tested")
# s: a child starts this soon after its last parent ended when it waited for that parent
# (the scheduler's own latency); a longer gap was a wait for an engine slot
PARENT_TOLERANCE = 0.5
CRITICAL = "#b00020"  # the critical path's outline
ARROW = " → "
_HATCH = "repeating-linear-gradient(45deg, #f4f4f4 0 3px, #c8c8c8 3px 5px)"


@dataclass
class RunEntry:
    """One image of the last run: when it started and ended (seconds from the run's
    start), on which engine, how it ended."""

    image: str
    status: str
    start: float | None = None
    end: float | None = None
    engine: str | None = None
    error: str = ""

    @property
    def duration(self) -> float | None:
        return None if self.start is None or self.end is None else self.end - self.start


def last_run(log_text: str) -> list[RunEntry]:
    """The images of the last run in the run log, in the order they ended."""
    entries: dict[str, RunEntry] = {}
    began: float | None = None
    starts: dict[str, tuple[float, str]] = {}
    for line in log_text.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        when = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S").timestamp() + int(match[2]) / 1000
        message = match[3]
        if message.startswith("run: "):
            entries, starts, began = {}, {}, when
            continue
        if began is None:
            continue
        start = _START.match(message)
        if start:
            starts[start[1]] = (when - began, start[3])
            continue
        word, _, rest = message.partition(" ")
        image, _, error = rest.partition(" ")
        if word == "requeued":
            starts.pop(image, None)
        elif word in _ENDS and image:
            at, engine = starts.pop(image, (None, None))
            entries[image] = RunEntry(
                image, word, at, when - began if at is not None else None, engine, error.strip()
            )
    return list(entries.values())


def lanes(entries: Sequence[RunEntry]) -> list[tuple[str, int, RunEntry]]:
    """(engine, lane, entry) for each entry that ran: the first lane of its engine free
    when it started (the log does not record the slot)."""
    busy: dict[str, list[float]] = {}  # engine -> each lane's end
    placed = []
    ran = [e for e in entries if e.start is not None and e.end is not None]
    for entry in sorted(ran, key=lambda e: (e.start or 0.0, e.image)):
        engine = entry.engine or "engine"
        ends = busy.setdefault(engine, [])
        lane = next((i for i, end in enumerate(ends) if end <= (entry.start or 0.0)), len(ends))
        if lane == len(ends):
            ends.append(0.0)
        ends[lane] = entry.end or 0.0
        placed.append((engine, lane, entry))
    return placed


@dataclass
class CriticalPath:
    """The chain of images that decided when the run ended, first to last; ``wait``
    seconds before the first one started that were not spent on a parent (it waited for
    an engine slot after ``ready``, when its last parent ended or the run began)."""

    images: list[str]
    busy: float  # s: the chain's builds, added up
    total: float  # s: the run, from its start to the last build's end
    wait: float = 0.0
    ready: float = 0.0
    after: str | None = None  # the parent that ended at ``ready``, if any

    def legend(self) -> str:
        text = (f"critical path: {ARROW.join(self.images)} "
                f"({self.busy:.1f} s of the run's {self.total:.1f} s)")
        if self.wait:
            since = f"{self.after} ended" if self.after else "the run began"
            text += (f"; before it, {self.images[0]} waited {self.wait:.1f} s for an engine "
                     f"slot after {since} (the dashed line)")
        return text


def critical_path(
    run: Sequence[RunEntry], graph: StackGraph, tolerance: float = PARENT_TOLERANCE
) -> CriticalPath | None:
    """From the build that ended last, step back to the in-stack parent that ended last
    before it started, while it started within ``tolerance`` of that end; a longer gap
    (or a start long after the run began) was a wait for a slot, and ends the chain."""
    ran = {e.image: e for e in run if e.start is not None and e.end is not None}
    if not ran:
        return None
    current = max(ran.values(), key=lambda e: (e.end or 0.0, e.duration or 0.0, e.image))
    total = current.end or 0.0
    chain = [current]
    while True:
        start = current.start or 0.0
        parents = graph.parents(current.image) if current.image in graph.nodes else ()
        before = [ran[p] for p in parents if p in ran and (ran[p].end or 0.0) <= start + tolerance]
        last = max(before, key=lambda e: (e.end or 0.0, e.image), default=None)
        ready = (last.end or 0.0) if last else 0.0
        if start - ready > tolerance or last is None:
            break
        current = last
        chain.append(current)
    chain.reverse()
    wait = start - ready if start - ready > tolerance else 0.0
    return CriticalPath(
        [e.image for e in chain], sum(e.duration or 0.0 for e in chain), total,
        wait, ready if wait else 0.0, last.image if wait and last else None,
    )


def idle_seconds(run: Sequence[RunEntry]) -> dict[tuple[str, int], float]:
    """Per (engine, lane): the seconds of the run it built nothing."""
    placed = lanes(run)
    total = max((entry.end or 0.0 for _, _, entry in placed), default=0.0)
    idle: dict[tuple[str, int], float] = {}
    for engine, lane, entry in placed:
        idle[(engine, lane)] = idle.get((engine, lane), total) - (entry.duration or 0.0)
    return {slot: max(seconds, 0.0) for slot, seconds in sorted(idle.items())}


def node_states(plan: Plan | None, run: Sequence[RunEntry]) -> dict[str, str]:
    """``build`` / ``skip`` per image from the plan; ``failed`` where the last run failed
    it and it is still to build (no plan: the last run's status)."""
    ended = {entry.image: entry.status for entry in run}
    if plan is None:
        return dict(ended)
    states = {}
    for step in plan.steps:
        state = "skip" if step.action != BUILD else "build"
        if state == "build" and ended.get(step.image) == "failed":
            state = "failed"
        states[step.image] = state
    return states


def _dot_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def styled_dot(
    graph: StackGraph, states: Mapping[str, str], own_bytes: Mapping[str, int]
) -> str:
    """``graph --format dot`` with each image filled by its state and, with layer data,
    drawn wider and taller the more bytes it adds itself (area ~ own bytes)."""
    largest = max(own_bytes.values(), default=0)
    attrs: dict[str, str] = {}
    for name in graph.order:
        fill = COLOURS.get(states.get(name, ""), "#ffffff")
        parts = ["style=filled", f"fillcolor={_dot_string(fill)}"]
        tooltip = f"{name}: {states.get(name, 'unknown')}"
        if name in own_bytes and largest:
            scale = 1 + 1.5 * (own_bytes[name] / largest) ** 0.5
            parts += [f"width={0.75 * scale:.2f}", f"height={0.5 * scale:.2f}"]
            tooltip += f", adds {human_bytes(own_bytes[name])}"
        parts.append(f"tooltip={_dot_string(tooltip)}")
        attrs[name] = ", ".join(parts)
    return graph_dot(graph, attrs)


def svg_body(svg: str) -> str:
    """An SVG document without its XML prolog and DOCTYPE, to inline into HTML."""
    start = svg.find("<svg")
    body = svg[start:] if start >= 0 else svg
    # HTML knows the SVG namespaces: the declarations (URLs, if only names) can go
    return re.sub(r'\s+xmlns(?::xlink)?="[^"]*"', "", body, count=2)


def layered_svg(
    graph: StackGraph, states: Mapping[str, str], own_bytes: Mapping[str, int]
) -> str:
    """The graph drawn without Graphviz: one column per level, edges as lines."""
    box_w, box_h, gap_x, gap_y = 170, 34, 70, 18  # inline in HTML: no xmlns needed
    pos: dict[str, tuple[int, int]] = {}
    levels = graph.levels()
    for column, level in enumerate(levels):
        for row, name in enumerate(level):
            pos[name] = (20 + column * (box_w + gap_x), 20 + row * (box_h + gap_y))
    width = 40 + len(levels) * (box_w + gap_x)
    height = 40 + max((len(level) for level in levels), default=1) * (box_h + gap_y)
    out = [f'<svg class="graph" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}">']
    for parent, child in graph.edges():
        (x1, y1), (x2, y2) = pos[parent], pos[child]
        out.append(f'<line class="edge" x1="{x1 + box_w}" y1="{y1 + box_h // 2}" x2="{x2}" '
                   f'y2="{y2 + box_h // 2}" stroke="#555"/>')
    for name in graph.order:
        x, y = pos[name]
        fill = COLOURS.get(states.get(name, ""), "#ffffff")
        label = name + (f" (+{human_bytes(own_bytes[name])})" if name in own_bytes else "")
        out.append(
            f'<g class="node"><title>{html.escape(name)}</title><rect x="{x}" y="{y}" '
            f'width="{box_w}" height="{box_h}" rx="4" fill="{fill}" stroke="#333"/>'
            f'<text x="{x + 8}" y="{y + 21}" font-size="12">{html.escape(label)}</text></g>'
        )
    out.append("</svg>")
    return "\n".join(out)


def gantt_svg(run: Sequence[RunEntry], critical: CriticalPath | None = None) -> str:
    """The last run as bars on a time axis, one row per engine slot: the time a slot
    built nothing hatched (its idle seconds at the row's end), the critical path's bars
    outlined, the slot wait before its first bar a dashed line under the row."""
    placed = lanes(run)
    rows = sorted({(engine, lane) for engine, lane, _ in placed})
    total = max((entry.end or 0.0 for _, _, entry in placed), default=0.0) or 1.0
    idle = idle_seconds(run)
    on_path = set(critical.images) if critical else set()
    label_w, chart_w, row_h, idle_w = 260, 640, 26, 90
    height = 40 + row_h * max(len(rows), 1)
    out = [f'<svg class="gantt" width="{label_w + chart_w + idle_w}"'
           f' height="{height}">',
           '<defs><pattern id="idle-hatch" width="6" height="6" patternUnits="userSpaceOnUse"'
           ' patternTransform="rotate(45)"><rect width="6" height="6" fill="#f4f4f4"/>'
           '<line x1="0" y1="0" x2="0" y2="6" stroke="#c8c8c8" stroke-width="2"/>'
           '</pattern></defs>']
    for index, (engine, lane) in enumerate(rows):
        y = 10 + index * row_h
        out.append(f'<text class="slot" x="4" y="{y + 16}" font-size="11">'
                   f'{html.escape(engine)} #{lane + 1}</text>'
                   f'<rect class="idle" x="{label_w}" y="{y}" width="{chart_w}" '
                   f'height="{row_h - 6}" fill="url(#idle-hatch)"/>'
                   f'<text class="idle" x="{label_w + chart_w + 6}" y="{y + 16}" font-size="11">'
                   f'idle {idle.get((engine, lane), 0.0):.1f}s</text>')
    for tick in range(6):
        x = label_w + chart_w * tick / 5
        out.append(f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height - 20}" stroke="#ddd"/>'
                   f'<text x="{x:.1f}" y="{height - 5}" font-size="11" text-anchor="middle">'
                   f'{total * tick / 5:.1f}s</text>')
    for engine, lane, entry in placed:
        y = 10 + rows.index((engine, lane)) * row_h
        x = label_w + chart_w * (entry.start or 0.0) / total
        w = max(chart_w * (entry.duration or 0.0) / total, 2.0)
        fill = COLOURS.get(entry.status, "#ffffff")
        if critical and critical.wait and entry.image == critical.images[0]:
            wx = label_w + chart_w * critical.ready / total  # under the row: the slot's
            out.append(  # bars during the wait show who held it
                f'<g class="wait"><title>{html.escape(entry.image)} waited '
                f'{critical.wait:.1f}s for an engine slot</title><line x1="{wx:.1f}" '
                f'y1="{y + row_h - 4}" x2="{x:.1f}" y2="{y + row_h - 4}" stroke="{CRITICAL}" '
                f'stroke-width="2" stroke-dasharray="4 3"/></g>'
            )
        outline = (f'stroke="{CRITICAL}" stroke-width="3"' if entry.image in on_path
                   else 'stroke="#333"')
        kind = "bar critical" if entry.image in on_path else "bar"
        fits = max(int((w - 4) / 6.5), 1)  # ~6.5 px a character at 11 px: the rest in <title>
        label = entry.image if len(entry.image) <= fits else entry.image[: fits - 1] + "…"
        out.append(
            f'<g class="{kind}" data-image="{html.escape(entry.image)}"><title>'
            f'{html.escape(entry.image)}: {entry.status} in {entry.duration or 0.0:.1f}s</title>'
            f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row_h - 6}" fill="{fill}" '
            f'{outline}/><text x="{x + 3:.1f}" y="{y + 14}" font-size="11">'
            f"{html.escape(label)}</text></g>"
        )
    out.append("</svg>")
    return "\n".join(out)


_CSS = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; font-size: 13px; }
td.num { text-align: right; }
.legend span { padding: 2px 8px; margin-right: 6px; border: 1px solid #999; }
.warn { color: #a33; }
"""


def report_html(
    title: str,
    graph_svg: str,
    plan: Plan | None,
    run: Sequence[RunEntry],
    account: StackAccount | None,
    notes: Sequence[str] = (),
    graph: StackGraph | None = None,
) -> str:
    """One self-contained page: inline SVG and CSS, no script, no external URL. With
    the stack's ``graph``, the timeline marks the last run's critical path."""
    esc = html.escape
    ended = {entry.image: entry for entry in run}
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        '<section id="graph"><h2>Hierarchy</h2><p class="legend">'
        + "".join(f'<span style="background:{COLOURS[k]}">{k}</span>'
                  for k in ("build", "skip", "failed"))
        + "</p>" + svg_body(graph_svg) + "</section>",
        '<section id="statuses"><h2>Plan and last run</h2><table><tr><th>image</th>'
        "<th>plan</th><th>last run</th><th>duration</th><th>engine</th><th>error</th></tr>",
    ]
    names = [s.image for s in plan.steps] if plan else [e.image for e in run]
    for name in names:
        entry = ended.get(name)
        action = plan.step(name).action if plan else ""
        duration = f"{entry.duration:.1f}s" if entry and entry.duration is not None else ""
        parts.append(
            f"<tr><td>{esc(name)}</td><td>{esc(action)}</td>"
            f"<td>{esc(entry.status) if entry else 'not in it'}</td>"
            f'<td class="num">{duration}</td><td>{esc(entry.engine or "") if entry else ""}</td>'
            f"<td>{esc(entry.error) if entry else ''}</td></tr>"
        )
    parts.append("</table></section>")
    parts.append('<section id="timeline"><h2>Last run, per engine slot</h2>')
    if run:
        critical = critical_path(run, graph) if graph is not None else None
        parts.append(gantt_svg(run, critical))
        if critical:
            parts.append(f'<p class="legend" id="critical-path"><span style="border:3px solid '
                         f'{CRITICAL}">&nbsp;</span>{esc(critical.legend(), quote=False)}</p>')
        idle = "; ".join(f"{engine} #{lane + 1} {seconds:.1f} s"
                         for (engine, lane), seconds in idle_seconds(run).items())
        if idle:
            parts.append(f'<p class="legend" id="idle"><span style="background:{_HATCH}">'
                         f"&nbsp;</span>hatched: a slot building nothing; idle time per slot: "
                         f"{esc(idle)}</p>")
        parts.append("<p>Lanes are rebuilt from the run log, which records the engine of "
                     "each build but not its slot.</p>")
    else:
        parts.append("<p>No run in .stackbuild/logs/stackbuild.log yet.</p>")
    parts.append("</section>")
    parts.append('<section id="layers"><h2>Layers</h2>')
    if account is None or not account.images:
        parts.append("<p>No layer data: no image of the stack is built at its current "
                     "fingerprint on the engine.</p>")
    else:
        parts.append("<table><tr><th>image</th><th>level</th><th>layers</th><th>size</th>"
                     "<th>own</th><th>inherited</th></tr>")
        for image in account.images:
            parts.append(
                f"<tr><td>{esc(image.name)}</td><td class=num>{image.level}</td>"
                f"<td class=num>{len(image.layers)}</td>"
                f"<td class=num>{human_bytes(image.size)}</td>"
                f"<td class=num>{human_bytes(image.own_bytes)}</td>"
                f"<td class=num>{human_bytes(image.inherited_bytes)}</td></tr>"
            )
        parts.append(
            f"</table><p>Stored once: {human_bytes(account.stored_bytes)}; the images' full "
            f"sizes add up to {human_bytes(account.full_bytes)}; sharing saves "
            f"{human_bytes(account.saved_bytes)}.</p>"
        )
        parts += [f'<p class="warn">{esc(w)}</p>' for i in account.images for w in i.warnings]
    parts.append("</section>")
    parts += [f'<p class="warn">{esc(note)}</p>' for note in notes]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
