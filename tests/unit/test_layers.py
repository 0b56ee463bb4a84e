"""The layer accounting: inherited and own bytes, the stack stored once, stale children."""

from __future__ import annotations

import shutil
from pathlib import Path

from stackbuild import render
from stackbuild.analyze import analyze
from stackbuild.backends.contract import FINGERPRINT_LABEL
from stackbuild.cli.commands.layers import stack_layers
from stackbuild.layers import ImageLayers, Layer, account, layers_from_history
from tests.fakes import FakeBackend

REPO = Path(__file__).resolve().parents[2]


def image(name: str, *layers: tuple[str, int]) -> ImageLayers:
    made = tuple(Layer(diff, size, f"RUN {diff}") for diff, size in layers)
    return ImageLayers(f"sha256:{name}", sum(layer.size for layer in made), made)


BASE = image("base", ("b1", 1000), ("b2", 0))
HTTPD = image("httpd", ("b1", 1000), ("b2", 0), ("h1", 50))
TOOLS = image("tools", ("b1", 1000), ("b2", 0), ("t1", 20))
SITE = image("site", ("b1", 1000), ("b2", 0), ("h1", 50), ("s1", 7))
LEVELS = [["base"], ["httpd", "tools"], ["site"]]
PARENTS = {"base": [], "httpd": ["base"], "tools": ["base"], "site": ["httpd", "tools"]}
FROM = {"httpd": ["base"], "tools": ["base"], "site": ["httpd"]}


def test_base_is_stored_once_and_each_image_owns_what_it_adds() -> None:
    built = {"base": BASE, "httpd": HTTPD, "tools": TOOLS, "site": SITE}
    result = account(LEVELS, PARENTS, FROM, built)
    by_name = {i.name: i for i in result.images}
    assert by_name["site"].own_bytes == 7 and by_name["site"].inherited_bytes == 1050
    assert {p.parent: (p.layers, p.bytes) for p in by_name["site"].parents} == {
        "httpd": (3, 1050), "tools": (2, 1000)  # COPY --from shares what both have: base
    }
    assert by_name["base"].own_bytes == 1000
    assert result.full_bytes == 1000 + 1050 + 1020 + 1057
    assert result.stored_bytes == 1000 + 50 + 20 + 7
    assert result.saved_bytes == result.full_bytes - result.stored_bytes
    assert [(lv.level, lv.stored_bytes) for lv in result.levels] == [(0, 1000), (1, 70), (2, 7)]
    assert not any(i.warnings for i in result.images)
    text = render.layers_text(result)
    assert "saved by sharing: 3.0 kB (3050 bytes = 4127 - 1077)" in text


def test_a_child_built_on_another_build_of_its_parent_is_flagged() -> None:
    rebuilt = image("httpd2", ("b1", 1000), ("b2", 0), ("h2", 60))
    built = {"base": BASE, "httpd": rebuilt, "tools": TOOLS, "site": SITE}
    site = {i.name: i for i in account(LEVELS, PARENTS, FROM, built).images}["site"]
    assert site.warnings == (
        "site is not built on all of the current build of httpd, which its FROM names: "
        "it was built on another httpd; rebuild it (stackbuild build site)",
    )
    # its own bytes: what no current parent holds
    assert site.own_bytes == 57
    alien = image("other", ("x", 5))
    tools = {i.name: i for i in account(LEVELS, PARENTS, FROM, {"base": BASE, "tools": alien})
             .images}["tools"]
    assert "tools shares no layer with the current build of base" in tools.warnings[0]


def test_missing_images_are_listed_not_counted() -> None:
    result = account(LEVELS, PARENTS, FROM, {"base": BASE})
    assert result.missing == ("httpd", "tools", "site")
    assert result.stored_bytes == result.full_bytes == 1000


def test_history_pairs_with_the_layers_empty_instructions_left_out() -> None:
    history = [  # the API's order: newest first (BuildKit's words)
        {"CreatedBy": "RUN /bin/sh -c chmod 0755 /x # buildkit", "Size": 222},
        {"CreatedBy": 'CMD ["sh"]', "Size": 0},
        {"CreatedBy": "ENV PATH=/bin", "Size": 0},
        {"CreatedBy": "RUN /bin/busybox --install -s /bin # buildkit", "Size": 0},
        {"CreatedBy": "COPY rootfs/ / # buildkit", "Size": 1980},
        {"CreatedBy": "ARG TARGETARCH", "Size": 0},
    ]
    layers = layers_from_history(["sha256:a", "sha256:b", "sha256:c"], history)
    assert [(layer.size, layer.created_by.split()[0]) for layer in layers] == [
        (1980, "COPY"), (0, "RUN"), (222, "RUN")
    ]
    classic = [
        {"CreatedBy": '/bin/sh -c #(nop)  CMD ["sh"]', "Size": 0},
        {"CreatedBy": "/bin/sh -c #(nop) WORKDIR /w", "Size": 0},
        {"CreatedBy": "/bin/sh -c #(nop) COPY dir:abc in / ", "Size": 10},
    ]
    assert [layer.size for layer in layers_from_history(["sha256:a", "sha256:b"], classic)] == [
        10, 0
    ]


def test_the_command_reads_the_engine_at_each_image_s_fingerprint(tmp_path: Path) -> None:
    shutil.copy(REPO / "stack.yaml", tmp_path / "stack.yaml")
    shutil.copytree(REPO / "images", tmp_path / "images", symlinks=True)
    analysis = analyze(tmp_path / "stack.yaml")
    backend = FakeBackend()
    base = [Layer("sha256:base", 1000, "COPY rootfs/ /")]
    own = {"base": [], "httpd": [Layer("sha256:h", 50)], "tools": [Layer("sha256:t", 20)]}
    for name in ("base", "httpd", "tools"):
        backend.add_image(
            f"sha256:{name}", [f"{name}:latest"], layers=base + own[name],
            labels={FINGERPRINT_LABEL: analysis.inputs[name].fingerprint},
        )
    backend.add_image("sha256:stale", ["runner:latest"], layers=base,
                      labels={FINGERPRINT_LABEL: "sha256:" + "0" * 64})
    result = stack_layers(analysis, backend)
    assert [i.name for i in result.images] == ["base", "httpd", "tools"]
    assert set(result.missing) == {"runner", "site-hello", "site-ops"}
    assert result.stored_bytes == 1070 and result.full_bytes == 3070
    assert result.to_json()["saved_bytes"] == 2000
