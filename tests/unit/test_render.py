"""Renderings of plans and graphs: plan text/JSON, graph text/DOT/Mermaid/JSON (no engine)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from stackbuild import render
from stackbuild.analyze import analyze

#   alpine:3.19 -> base ─┬─ left ──┬─ top
#                        └─ right ─┘   (COPY --from=right)
DIAMOND = {
    "base": "FROM alpine:3.19\nRUN echo base\n",
    "left": "FROM base\nRUN echo left\n",
    "right": "FROM base\nRUN echo right\n",
    "top": "FROM left\nCOPY --from=right /x /x\n",
}


def write_stack(root: Path, dockerfiles: dict[str, str], registry: str | None = None) -> Path:
    lines = ["version: 1"] + ([f"registry: {registry}"] if registry else []) + ["images:"]
    for name, dockerfile in dockerfiles.items():
        directory = root / "images" / name
        directory.mkdir(parents=True)
        (directory / "Dockerfile").write_text(dockerfile)
        (directory / "file.txt").write_text(f"{name}\n")
        lines += [f"  {name}:", f"    context: images/{name}"]
    (root / "stack.yaml").write_text("\n".join(lines) + "\n")
    return root / "stack.yaml"


@pytest.fixture
def diamond(tmp_path: Path):
    return analyze(write_stack(tmp_path, DIAMOND))


# -- graphs ------------------------------------------------------------------------------


def test_graph_json_has_nodes_in_order_and_edges(diamond) -> None:
    data = render.graph_json(diamond.graph)
    json.dumps(data)  # plain JSON types
    assert [n["name"] for n in data["nodes"]] == ["base", "left", "right", "top"]
    nodes = {n["name"]: n for n in data["nodes"]}
    assert nodes["base"] == {
        "name": "base",
        "reference": "base",
        "parents": [],
        "upstream": ["alpine:3.19"],
        "context": "images/base",
    }
    assert nodes["top"]["parents"] == ["left", "right"]
    assert nodes["top"]["upstream"] == []
    assert data["edges"] == [["base", "left"], ["base", "right"], ["left", "top"], ["right", "top"]]


def test_graph_json_references_carry_the_registry(tmp_path: Path) -> None:
    graph = analyze(write_stack(tmp_path, DIAMOND, registry="127.0.0.1:5000/acme")).graph
    nodes = {n["name"]: n for n in render.graph_json(graph)["nodes"]}
    assert nodes["top"]["reference"] == "127.0.0.1:5000/acme/top"


def test_graph_dot(diamond) -> None:
    dot = render.graph_dot(diamond.graph)
    lines = dot.splitlines()
    assert lines[0] == "digraph stack {" and lines[-1] == "}"
    for parent, child in [("base", "left"), ("base", "right"), ("left", "top"), ("right", "top")]:
        assert f'  "{parent}" -> "{child}";' in lines
    assert '  "alpine:3.19" [style=dashed];' in lines
    assert '  "alpine:3.19" -> "base" [style=dashed];' in lines
    assert sum("->" in line for line in lines) == 5


def test_graph_mermaid(diamond) -> None:
    text = render.graph_mermaid(diamond.graph)
    lines = text.splitlines()
    assert lines[0] == "graph LR"
    ids = {}
    for line in lines[1:]:
        if m := re.fullmatch(r'  (\S+)\["(.+)"\]', line):
            ids[m.group(2)] = m.group(1)
    assert set(ids) == {"base", "left", "right", "top"}
    for parent, child in [("base", "left"), ("base", "right"), ("left", "top"), ("right", "top")]:
        assert f"  {ids[parent]} --> {ids[child]}" in lines
    upstream = [line for line in lines if '(["alpine:3.19"])' in line]
    assert len(upstream) == 1
    up_id = upstream[0].split("(")[0].strip()
    assert f"  {up_id} -.-> {ids['base']}" in lines


def test_graph_mermaid_ids_stay_distinct_for_similar_names(tmp_path: Path) -> None:
    # '-', '_', '.' and '/' are all allowed in image names; each must stay its own node
    dockerfiles = {
        "up-debian": "FROM debian\n",
        "my-app": "FROM up-debian\n",
        "my_app": "FROM up-debian\n",
        "my.app": "FROM up-debian\n",
        "my/app": "FROM up-debian\n",
    }
    text = render.graph_mermaid(analyze(write_stack(tmp_path, dockerfiles)).graph)
    ids = re.findall(r"^  (\w+)[\[(]", text, re.MULTILINE)
    assert len(ids) == len(set(ids)) == 6, text  # 5 images + the upstream "debian"
    assert len(re.findall(r"-->", text)) == 4


def test_graph_text_tree_marks_second_parents(diamond) -> None:
    assert render.graph_text(diamond.graph).splitlines() == [
        "base  <- alpine:3.19",
        "├── left",
        "│   └── top  (also on: right)",
        "└── right",
        "    └── top  (see above)",
    ]


def test_graph_text_draws_siblings_with_tee_and_the_last_with_an_elbow(tmp_path: Path) -> None:
    # siblings under base, under left and under right; top on two parents; a chain under
    # the last child (no bar continues there), a second root with its own upstream
    dockerfiles = {
        **DIAMOND,
        "leaf": "FROM left\n",
        "solo": "FROM right\n",
        "deep": "FROM solo\n",
        "other": "FROM debian:12\n",
    }
    assert render.graph_text(_graph_of(write_stack(tmp_path, dockerfiles))).splitlines() == [
        "base  <- alpine:3.19",
        "├── left",
        "│   ├── top  (also on: right)",
        "│   └── leaf",
        "└── right",
        "    ├── top  (see above)",
        "    └── solo",
        "        └── deep",
        "other  <- debian:12",
    ]


def _graph_of(stack_file: Path):
    from stackbuild.analyze import read_dockerfiles
    from stackbuild.graph import build_graph
    from stackbuild.manifest import load_stack

    stack = load_stack(stack_file)
    return build_graph(stack, read_dockerfiles(stack)[1])


def test_graph_text_of_the_example_stack() -> None:
    example = Path(__file__).resolve().parents[2] / "stack.yaml"
    assert render.graph_text(_graph_of(example)).splitlines() == [
        "base",
        "├── httpd",
        "│   ├── site-hello  (also on: base)",
        "│   └── site-ops  (also on: tools)",
        "├── tools",
        "│   ├── site-ops  (see above)",
        "│   └── runner",
        "└── site-hello  (see above)",
    ]


def test_graph_text_prints_each_image_once_however_many_paths(tmp_path: Path) -> None:
    # layers of 3 images, each on all 3 of the layer above: 3**16 paths from the root
    dockerfiles = {"l0": "FROM alpine:3.19\n"}
    above = ["l0"]
    for depth in range(1, 17):
        layer = [f"l{depth}-{i}" for i in range(3)]
        for name in layer:
            copies = "".join(f"COPY --from={p} /x /x\n" for p in above[1:])
            dockerfiles[name] = f"FROM {above[0]}\n{copies}"
        above = layer
    graph = _graph_of(write_stack(tmp_path, dockerfiles))
    lines = render.graph_text(graph).splitlines()
    edges = len(list(graph.edges()))
    assert len(lines) == edges + 1  # the root, then one line per edge
    full = [line.split("── ")[-1].split()[0] for line in lines if "(see above)" not in line]
    assert sorted(full) == sorted(dockerfiles)  # each image drawn in full exactly once


def test_graph_text_of_a_chain_deeper_than_the_recursion_limit(tmp_path: Path) -> None:
    import sys

    count = sys.getrecursionlimit() + 50
    dockerfiles = {"c0": "FROM alpine:3.19\n"}
    dockerfiles.update({f"c{i}": f"FROM c{i - 1}\n" for i in range(1, count)})
    lines = render.graph_text(_graph_of(write_stack(tmp_path, dockerfiles))).splitlines()
    assert len(lines) == count
    assert lines[-1] == f"{'    ' * (count - 2)}└── c{count - 1}"


def test_ls_rows(diamond) -> None:
    assert render.ls_rows(diamond.graph) == [
        ["base", "-", "alpine:3.19", "images/base"],
        ["left", "base", "-", "images/left"],
        ["right", "base", "-", "images/right"],
        ["top", "left, right", "-", "images/top"],
    ]


# -- plans -------------------------------------------------------------------------------


def test_plan_text_offline_builds_everything_with_reasons(diamond) -> None:
    plan = diamond.plan(None)
    lines = render.plan_text(plan, "stack.yaml").splitlines()
    assert lines[0] == "plan for stack.yaml: 4 to build, 0 up to date"
    assert lines[1].split() == ["ACTION", "IMAGE", "FINGERPRINT", "WHY"]
    rows = [line for line in lines[2:] if line.startswith("build")]
    assert [row.split()[1] for row in rows] == ["base", "left", "right", "top"]
    fingerprint = diamond.inputs["top"].fingerprint
    top = next(row for row in rows if row.split()[1] == "top")
    assert fingerprint[:19] in top  # sha256: + 12 hex
    assert "not checked (offline)" in top
    # a second reason goes on its own line, under WHY
    why = lines[1].index("WHY")
    continuation = lines[lines.index(top) + 1]
    assert continuation[:why].strip() == "" and continuation[why:] == "never built here"


def test_plan_text_mixes_skip_and_build(diamond) -> None:
    existing = {"base": "local engine", "left": "local engine", "right": "local engine"}
    text = render.plan_text(diamond.plan(existing), "stack.yaml")
    assert text.splitlines()[0] == "plan for stack.yaml: 1 to build, 3 up to date"
    assert re.search(r"^skip\s+base\s+sha256:\w{12}\s+up to date: this fingerprint", text, re.M)
    assert re.search(r"^build\s+top\s+sha256:\w{12}\s+never built here$", text, re.M)


def test_plan_json(diamond) -> None:
    existing = {"base": "local engine"}
    data = json.loads(render.plan_json(diamond.plan(existing, force=["left"])))
    assert data["summary"] == {"build": 3, "skip": 1, "test": 0, "promote": 0}
    steps = {s["image"]: s for s in data["steps"]}
    assert [s["image"] for s in data["steps"]] == ["base", "left", "right", "top"]
    assert steps["base"]["action"] == "skip"
    assert steps["base"]["upstream"] == [{"ref": "alpine:3.19", "digest": None}]
    assert steps["top"]["parents"] == ["left", "right"]
    assert steps["top"]["fingerprint"] == diamond.inputs["top"].fingerprint
    assert {"code": "forced", "detail": "forced with --force"} in steps["left"]["reasons"]
    assert all(set(r) == {"code", "detail"} for s in data["steps"] for r in s["reasons"])


def test_why_text(diamond) -> None:
    text = render.why_text(diamond.plan(None), "top")
    lines = text.splitlines()
    assert lines[0] == f"top will be built ({diamond.inputs['top'].fingerprint})"
    assert "  - not checked (offline)" in lines
    assert "  parents: left, right" in lines
    assert "upstream: alpine:3.19 @ unpinned" in render.why_text(diamond.plan(None), "base")


def test_table_aligns_columns_and_leaves_the_last_unpadded() -> None:
    text = render.table([["a", "bbb", "c"], ["dddd", "e", ""]], ["X", "Y", "Z"])
    assert text.splitlines() == ["X     Y    Z", "a     bbb  c", "dddd  e"]
    assert render.table([]) == ""


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (-3, "0s"), (59.9, "59s"), (60, "1m00s"), (187, "3m07s"), (7500, "2h05m")],
)
def test_human_duration_in_whole_units_the_largest_two(seconds: float, text: str) -> None:
    assert render.human_duration(seconds) == text
