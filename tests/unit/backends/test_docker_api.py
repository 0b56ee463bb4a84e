"""The docker backend's labels as one LABEL line (one build step instead of one per label)."""

from __future__ import annotations

from stackbuild.backends.docker_api import with_label_line


def test_one_label_line_with_everything_quoted_and_nothing_expanded() -> None:
    out = with_label_line(b"FROM base\nRUN true", {"a.b": 'x "y" $HOME \\z', "e": ""})
    assert out == b'FROM base\nRUN true\nLABEL "a.b"="x \\"y\\" \\$HOME \\\\z" "e"=""\n'


def test_falls_back_to_the_build_parameter_when_appending_is_not_plainly_safe() -> None:
    labels = {"k": "v"}
    assert with_label_line(b"# escape=`\nFROM base\n", labels) is None
    assert with_label_line(b"FROM base\nRUN echo a \\\n", labels) is None
    assert with_label_line(b"FROM base\n", {"k": "two\nlines"}) is None
    assert with_label_line(b"FROM base\n", {}) is None
    assert with_label_line(b"FROM base\n", labels) == b'FROM base\nLABEL "k"="v"\n'
