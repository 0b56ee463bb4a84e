"""How stackbuild names images: tag templates filled in."""

from __future__ import annotations

from stackbuild.refs import render_tag


def test_render_tag_fills_placeholders() -> None:
    values = {"fingerprint12": "0123456789ab", "git_sha": "f" * 40, "date": "20240131"}
    assert render_tag("{fingerprint12}-{date}", values) == "0123456789ab-20240131"

