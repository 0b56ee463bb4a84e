"""Text renderings of plans and graphs: tables, trees, DOT, Mermaid, JSON.

Pure: functions from plain data to strings, so every output format is
tested without a terminal.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from stackbuild.graph import StackGraph
from stackbuild.plan import BUILD, PROMOTE, TEST, ImageNotes, Plan, short

if TYPE_CHECKING:  # a type only: plan never imports the layer accounts
    from stackbuild.layers import StackAccount

# how many warnings of one image ``plan`` lists before pointing at ``why``
MAX_PLAN_WARNINGS = 5


def table(rows: Sequence[Sequence[str]], header: Sequence[str] | None = None) -> str:
    """Left-aligned columns separated by two spaces; the last column is not padded."""
    all_rows = [list(header)] + [list(r) for r in rows] if header else [list(r) for r in rows]
    if not all_rows:
        return ""
    widths = [max(len(row[i]) for row in all_rows) for i in range(len(all_rows[0]) - 1)]
    lines = []
    for row in all_rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def counts_line(to_build: int, up_to_date: int, to_test: int = 0) -> str:
    """``2 to build, 1 to test, 3 up to date``: what a plan or a run starting has to do
    (images only re-tested are not built)."""
    tested = f", {to_test} to test" if to_test else ""
    return f"{to_build} to build{tested}, {up_to_date} up to date"


def plan_text(plan: Plan, stack_name: str) -> str:
    to_build, to_test = len(plan.to_build), len(plan.to_test)
    up_to_date = len(plan.steps) - to_build - to_test
    lines = [f"plan for {stack_name}: {counts_line(to_build, up_to_date, to_test)}"]
    promote = sum(step.action == PROMOTE for step in plan)
    if promote:  # up to date too: only their release tags move
        lines[0] += f" ({promote} to promote)"
    rows = []
    for step in plan:
        reasons = [r.detail for r in step.reasons] or [""]
        rows.append([step.action, step.image, short(step.fingerprint), reasons[0]])
        rows += [["", "", "", more] for more in reasons[1:]]
    lines.append(table(rows, ["ACTION", "IMAGE", "FINGERPRINT", "WHY"]))
    return "\n".join(lines)


def plan_warnings(plan: Plan) -> str:
    """The plan's Dockerfile warnings, one a line, ``MAX_PLAN_WARNINGS`` per image at most
    (``why IMAGE`` shows all); "" when there are none."""
    lines = []
    for step in plan:
        shown = step.warnings[:MAX_PLAN_WARNINGS]
        lines += [f"warning: {warning}" for warning in shown]
        hidden = len(step.warnings) - len(shown)
        if hidden:
            lines.append(
                f"warning: ... and {hidden} more for {step.image}: stackbuild why {step.image}"
            )
    return "\n".join(lines)


def plan_json(plan: Plan) -> str:
    return json.dumps(plan.to_json(), indent=2)


def graph_json(graph: StackGraph) -> dict:
    return {
        "nodes": [
            {
                "name": name,
                "reference": graph.stack.reference(name),
                "parents": list(graph.parents(name)),
                "upstream": list(graph.upstream(name)),
                "context": graph.stack.images[name].context_rel,
            }
            for name in graph.order
        ],
        "edges": [list(edge) for edge in graph.edges()],
    }


def _graph_lines(
    graph: StackGraph,
    upstream_node: Callable[[str], str],
    image_node: Callable[[str], str],
    upstream_edge: Callable[[str, str], str],
    edge: Callable[[str, str], str],
) -> list[str]:
    """Nodes (upstreams dashed, then images) and edges, in a stable order, in any syntax."""
    upstreams = sorted({ref for name in graph.order for ref in graph.upstream(name)})
    lines = [upstream_node(ref) for ref in upstreams]
    lines += [image_node(name) for name in graph.order]
    lines += [upstream_edge(ref, name) for name in graph.order for ref in graph.upstream(name)]
    lines += [edge(parent, child) for parent, child in graph.edges()]
    return lines


def graph_dot(graph: StackGraph, node_attrs: Mapping[str, str] | None = None) -> str:
    """Graphviz DOT; ``node_attrs`` adds attributes to image nodes (``style=filled``)."""
    attrs = node_attrs or {}
    body = _graph_lines(
        graph,
        upstream_node=lambda ref: f'  "{ref}" [style=dashed];',
        image_node=lambda name: f'  "{name}" [{attrs[name]}];' if name in attrs else f'  "{name}";',
        upstream_edge=lambda ref, name: f'  "{ref}" -> "{name}" [style=dashed];',
        edge=lambda parent, child: f'  "{parent}" -> "{child}";',
    )
    return "\n".join(["digraph stack {", "  rankdir=LR;", "  node [shape=box];", *body, "}"])


def _mermaid_id(name: str, prefix: str = "n_") -> str:
    # injective: "my-app", "my_app", "my.app" and "my/app" are four images, so every
    # other character (the "_" too) becomes _<hex>_; upstreams get their own prefix
    return prefix + "".join(c if c.isascii() and c.isalnum() else f"_{ord(c):x}_" for c in name)


def graph_mermaid(graph: StackGraph) -> str:
    body = _graph_lines(
        graph,
        upstream_node=lambda ref: f'  {_mermaid_id(ref, "u_")}(["{ref}"])',
        image_node=lambda name: f'  {_mermaid_id(name)}["{name}"]',
        upstream_edge=lambda ref, name: f"  {_mermaid_id(ref, 'u_')} -.-> {_mermaid_id(name)}",
        edge=lambda parent, child: f"  {_mermaid_id(parent)} --> {_mermaid_id(child)}",
    )
    return "\n".join(["graph LR", *body])


def graph_text(graph: StackGraph) -> str:
    """An indented tree from the roots, drawn as ``tree`` draws one: ``├──`` before a
    child with siblings below it, ``└──`` before the last, ``│`` continuing a parent's
    line past its subtree. An image with two parents is drawn in full under the first,
    marked with its other parents so the tree stays honest about the DAG, and named with
    ``(see above)`` under the others: each image's subtree is printed once, so the output
    grows with images plus edges, not with the paths of the DAG."""
    lines: list[str] = []
    position = {name: index for index, name in enumerate(graph.order)}
    shown: set[str] = set()
    # (image, the prefix its children's lines continue, whether it is its parent's last
    # child, the parent it is drawn under): a stack, not recursion, since a chain of
    # images may be deeper than Python's recursion limit
    todo: list[tuple[str, str, bool, str | None]] = [
        (root, "", True, None) for root in reversed(graph.order) if not graph.parents(root)
    ]
    while todo:
        name, prefix, last, via = todo.pop()
        lead = f"{prefix}{'└── ' if last else '├── '}" if via else ""
        if name in shown:
            lines.append(f"{lead}{name}  (see above)")
            continue
        shown.add(name)
        others = [p for p in graph.parents(name) if p != via]
        suffix = f"  (also on: {', '.join(others)})" if via and others else ""
        upstream = graph.upstream(name)
        if not via and upstream:
            suffix += f"  <- {', '.join(upstream)}"
        lines.append(f"{lead}{name}{suffix}")
        below = f"{prefix}{'    ' if last else '│   '}" if via else ""
        children = sorted(graph.children(name), key=position.__getitem__)
        todo.extend(
            (child, below, index == 0, name) for index, child in enumerate(reversed(children))
        )
    return "\n".join(lines)


def ls_rows(graph: StackGraph) -> list[list[str]]:
    return [
        [
            name,
            ", ".join(graph.parents(name)) or "-",
            ", ".join(graph.upstream(name)) or "-",
            graph.stack.images[name].context_rel,
        ]
        for name in graph.order
    ]


def why_text(plan: Plan, image: str, notes: ImageNotes | None = None) -> str:
    """The plan of one image in full; with ``notes``, also every warning of its Dockerfile
    and the ONBUILD triggers it declares or runs."""
    step = plan.step(image)
    verdict = {BUILD: "will be built", TEST: "will be tested"}.get(step.action, "is up to date")
    lines = [f"{image} {verdict} ({step.fingerprint})"]
    lines += [f"  - {reason.detail}" for reason in step.reasons]
    if step.parents:
        lines.append(f"  parents: {', '.join(step.parents)}")
    if step.upstream:
        pins = [f"{ref} @ {short(d) if d else 'unpinned'}" for ref, d in step.upstream.items()]
        lines.append(f"  upstream: {', '.join(pins)}")
    warnings = notes.warnings if notes is not None else step.warnings
    if warnings:
        lines.append("  warnings:")
        lines += [f"    {warning}" for warning in warnings]
    if notes is not None:
        lines += _onbuild_lines(image, notes)
    return "\n".join(lines)


def _onbuild_lines(image: str, notes: ImageNotes) -> list[str]:
    lines = []
    if notes.onbuild:
        lines.append("  onbuild (no edge of this image):")
        lines += [
            f"    ONBUILD {t.trigger}: runs in every image built FROM this one ({t.location})"
            for t in notes.onbuild
        ]
    for inherited in notes.inherited:
        if inherited.via_from is None:
            lines.append(
                f"  onbuild of {inherited.parent}: none runs here ({image} is not built FROM "
                f"it: {len(inherited.triggers)} trigger(s) run only in a build FROM it)"
            )
            continue
        lines.append(
            f"  onbuild of {inherited.parent}: runs in this build, after FROM "
            f"{inherited.parent} ({inherited.via_from}):"
        )
        lines += [f"    ONBUILD {t.trigger} ({t.location})" for t in inherited.triggers]
    return lines


def human_bytes(count: int) -> str:
    """``1.9 MB``: decimal units, as ``docker images`` prints them."""
    if abs(count) < 1000:
        return f"{count} B"
    size = count / 1000
    for unit in ("kB", "MB"):
        if abs(size) < 1000:
            return f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def human_duration(seconds: float) -> str:
    """``45s``, ``3m07s``, ``2h05m``: whole units, the largest two."""
    whole = max(int(seconds), 0)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def layers_text(account: StackAccount) -> str:
    """Per image own and inherited bytes, per level and in total stored once against
    the sum of the full sizes, then the warnings."""
    rows = []
    for image in account.images:
        inherited = ", ".join(
            f"{p.parent} {p.layers} layer(s)" for p in image.parents
        ) or "-"
        rows.append([
            image.name, str(image.level), str(len(image.layers)), human_bytes(image.size),
            human_bytes(image.own_bytes), human_bytes(image.inherited_bytes), inherited,
        ])  # fmt: skip
    lines = [table(rows, ["IMAGE", "LEVEL", "LAYERS", "SIZE", "OWN", "INHERITED", "SHARED WITH"])]
    lines.append("")
    level_rows = [
        [str(level.level), ", ".join(level.images), human_bytes(level.full_bytes),
         human_bytes(level.stored_bytes)]
        for level in account.levels
    ]
    level_rows.append([
        "total", f"{len(account.images)} image(s)", human_bytes(account.full_bytes),
        human_bytes(account.stored_bytes),
    ])  # fmt: skip
    lines.append(table(level_rows, ["LEVEL", "IMAGES", "FULL SIZES", "STORED ONCE"]))
    lines.append(
        f"saved by sharing: {human_bytes(account.saved_bytes)} "
        f"({account.saved_bytes} bytes = {account.full_bytes} - {account.stored_bytes})"
    )
    if account.missing:
        lines.append(
            f"not built at their current fingerprint here: {', '.join(account.missing)} "
            "(stackbuild build)"
        )
    lines += [f"warning: {w}" for image in account.images for w in image.warnings]
    return "\n".join(lines)
