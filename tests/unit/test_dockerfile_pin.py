"""pin_references: a Dockerfile naming its parents by a pinned reference, nothing else changed."""

from __future__ import annotations

import random

import pytest

from stackbuild.dockerfile import parse_dockerfile, pin_references

PIN = "base:sbid-0123abcd"

# (id, Dockerfile, pins, build args, expected Dockerfile)
CASES = [
    ("plain FROM", "FROM base\nRUN true\n", {"base": PIN}, None, f"FROM {PIN}\nRUN true\n"),
    (
        "ARG default substituted, written literally",
        "ARG BASE=base\nFROM $BASE\n",
        {"base": PIN},
        None,
        f"ARG BASE=base\nFROM {PIN}\n",
    ),
    (
        "build arg overrides the default",
        "ARG BASE=other\nFROM ${BASE}\n",
        {"base": PIN},
        {"BASE": "base"},
        f"ARG BASE=other\nFROM {PIN}\n",
    ),
    (
        "--platform and AS kept",
        "FROM --platform=$BUILDPLATFORM base AS build\n",
        {"base": PIN},
        None,
        f"FROM --platform=$BUILDPLATFORM {PIN} AS build\n",
    ),
    (
        "stage named like its image: only the FROM's image",
        "FROM base AS base\nRUN true\nFROM base\nCOPY --from=base /a /a\n",
        {"base": PIN},
        None,
        f"FROM {PIN} AS base\nRUN true\nFROM base\nCOPY --from=base /a /a\n",
    ),
    (
        "stage numbers and scratch untouched",
        "FROM scratch\nFROM base\nCOPY --from=0 /a /a\n",
        {"base": PIN, "scratch": PIN, "0": PIN},
        None,
        f"FROM scratch\nFROM {PIN}\nCOPY --from=0 /a /a\n",
    ),
    (
        "COPY --from among other flags",
        "FROM x\nCOPY --chown=1:1 --from=base --link /a /b\n",
        {"base": PIN},
        None,
        f"FROM x\nCOPY --chown=1:1 --from={PIN} --link /a /b\n",
    ),
    (
        "COPY --from quoted",
        'FROM x\nCOPY --from="base" /a /b\n',
        {"base": PIN},
        None,
        f"FROM x\nCOPY --from={PIN} /a /b\n",
    ),
    (
        "RUN --mount: CSV field order kept",
        "FROM x\nRUN --mount=type=bind,from=base,target=/y --mount=type=cache,target=/c make\n",
        {"base": PIN},
        None,
        f"FROM x\nRUN --mount=type=bind,from={PIN},target=/y --mount=type=cache,target=/c make\n",
    ),
    (
        "RUN --mount from= first, type bind implied",
        "FROM x\nRUN --mount=from=base,target=/y,source=/s make\n",
        {"base": PIN},
        None,
        f"FROM x\nRUN --mount=from={PIN},target=/y,source=/s make\n",
    ),
    (
        "RUN --mount quoted",
        'FROM x\nRUN --mount="type=bind,from=base,target=/y" make\n',
        {"base": PIN},
        None,
        f'FROM x\nRUN --mount="type=bind,from={PIN},target=/y" make\n',
    ),
    (
        "registry port and tag",
        "FROM 127.0.0.1:5000/acme/base:1.0\nCOPY --from=localhost:5000/tools:2 /t /t\n",
        {
            "127.0.0.1:5000/acme/base:1.0": "127.0.0.1:5000/acme/base:sbid-1",
            "localhost:5000/tools:2": "localhost:5000/tools:sbid-2",
        },
        None,
        "FROM 127.0.0.1:5000/acme/base:sbid-1\nCOPY --from=localhost:5000/tools:sbid-2 /t /t\n",
    ),
    (
        "a reference not pinned stays",
        "FROM base\nFROM other\n",
        {"base": PIN},
        None,
        f"FROM {PIN}\nFROM other\n",
    ),
    (
        "continuation lines kept",
        "FROM \\\n  base \\\n  AS b\nRUN true\n",
        {"base": PIN},
        None,
        f"FROM \\\n  {PIN} \\\n  AS b\nRUN true\n",
    ),
    (
        "an operand split by a continuation",
        "FROM ba\\\nse AS b\nRUN true\n",
        {"base": PIN},
        None,
        f"FROM {PIN}\\\n AS b\nRUN true\n",
    ),
    (
        "an operand split by a continuation, at the end",
        "FROM ba\\\n# comment\nse\nRUN true\n",
        {"base": PIN},
        None,
        f"FROM {PIN}\n# comment\n\nRUN true\n",
    ),
    (
        "escape directive",
        "# escape=`\nFROM `\n  base\nRUN dir c:\\\n",
        {"base": PIN},
        None,
        f"# escape=`\nFROM `\n  {PIN}\nRUN dir c:\\\n",
    ),
    (
        "heredoc body byte-identical, even naming the image",
        "FROM x\nRUN --mount=from=base,target=/b <<EOF\nFROM base\n  base \\\nEOF\nFROM base\n",
        {"base": PIN},
        None,
        f"FROM x\nRUN --mount=from={PIN},target=/b <<EOF\nFROM base\n  base \\\nEOF\nFROM {PIN}\n",
    ),
    (
        "CRLF line ends and a BOM kept",
        "\ufeffFROM base\r\nRUN true\r\n",
        {"base": PIN},
        None,
        f"\ufeffFROM {PIN}\r\nRUN true\r\n",
    ),
    (
        "ONBUILD is not this image's parent",
        "FROM x\nONBUILD COPY --from=base /a /a\n",
        {"base": PIN},
        None,
        "FROM x\nONBUILD COPY --from=base /a /a\n",
    ),
]


@pytest.mark.parametrize(
    ("text", "pins", "args", "expected"), [case[1:] for case in CASES], ids=[c[0] for c in CASES]
)
def test_pin_references(text, pins, args, expected):
    pinned = pin_references(text, pins, args)
    assert pinned == expected
    _assert_same_shape(text, pinned, pins, args)


def _assert_same_shape(text, pinned, pins, args):
    """Same physical lines, same instructions at the same lines, the pinned refs reported."""
    assert pinned.count("\n") == text.count("\n")
    before = parse_dockerfile(text, args)
    after = parse_dockerfile(pinned, args)
    expected: dict[str, tuple] = {}
    for r in before.references:
        ref = pins.get(r.ref, r.ref)
        expected.setdefault(ref, (ref, r.instruction, r.line, r.stage))
    assert [(r.ref, r.instruction, r.line, r.stage) for r in after.references] == list(
        expected.values()
    )
    assert after.stages == before.stages
    assert _buildkit_shape(pinned) == _buildkit_shape(text)


def _buildkit_shape(text):
    """Each instruction's keyword, first line and heredocs, as BuildKit's own parser reads them."""
    dockerfile = pytest.importorskip("dockerfile")
    try:
        commands = dockerfile.parse_string(text)
    except dockerfile.GoParseError as error:
        return str(error)
    return [(c.cmd, c.start_line, c.heredocs) for c in commands]


def test_nothing_to_pin_returns_the_text_unchanged():
    text = "FROM a\r\nRUN x \\\n y\n"
    assert pin_references(text, {}) is text
    assert pin_references(text, {"zzz": PIN}) == text


def test_every_occurrence_is_pinned_not_only_the_first_reported():
    text = "FROM base AS one\nFROM base AS two\nCOPY --from=base /a /a\n"
    pinned = pin_references(text, {"base": PIN})
    # line 3 names neither stage: it is the image again
    assert pinned == f"FROM {PIN} AS one\nFROM {PIN} AS two\nCOPY --from={PIN} /a /a\n"


@pytest.mark.parametrize(
    ("mount", "flag"),
    [
        # the flag scanner removes these quotes before the CSV is read: 4 fields
        (
            'type=bind,"from=base",target=/y,"source=a,b"',
            f"type=bind,from={PIN},target=/y,source=a,b",
        ),
        # these survive it: a CSV field with a comma
        ("'type=bind,from=base,\"source=a,b\"'", f'type=bind,from={PIN},"source=a,b"'),
    ],
)
def test_pinned_quoted_mount_reads_back_the_same_fields(mount, flag):
    text = f"FROM x\nRUN --mount={mount} make\n"
    pinned = pin_references(text, {"base": PIN})
    dockerfile = pytest.importorskip("dockerfile")
    assert dockerfile.parse_string(pinned)[1].flags == (f"--mount={flag}",)
    assert parse_dockerfile(pinned).references[1].ref == PIN


def test_seeded_mutations_keep_lines_and_pin_every_reference():
    """Random Dockerfiles built from the pieces above: the pinned file always has the same
    lines and instructions, and reports exactly the pinned references."""
    rng = random.Random(10)
    pieces = [
        "FROM base",
        "FROM base AS base",
        "FROM --platform=$BUILDPLATFORM base AS b2",
        "ARG BASE=base",
        "FROM $BASE",
        "COPY --from=base /a /a",
        "COPY --from=0 /a /a",
        "RUN --mount=type=bind,from=base,target=/y true",
        "RUN <<EOF\nFROM base\nEOF",
        "FROM \\\n base \\\n AS c",
        "# comment",
        "",
        "RUN echo \\\n  # inner comment\n  done",
    ]
    for _ in range(300):
        text = "\n".join(rng.choice(pieces) for _ in range(rng.randint(1, 8))) + "\n"
        pinned = pin_references(text, {"base": PIN})
        _assert_same_shape(text, pinned, {"base": PIN}, None)
        assert "base" not in {r.ref for r in parse_dockerfile(pinned).references}
