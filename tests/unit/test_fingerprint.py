"""Fingerprints: exactly the inputs that decide an image move them, and nothing else does."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from dataclasses import replace
from pathlib import Path

import pytest

from stackbuild.context import ContextError, context_files
from stackbuild.fingerprint import HashCache, ImageInputs, image_inputs
from stackbuild.manifest import ImageSpec

DOCKERFILE = "FROM base\nCOPY . /app\n"
LONG_AGO = 1_600_000_000  # mtimes far from "now": digests of these files are saved


def write_context(root: Path) -> Path:
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "Dockerfile").write_text(DOCKERFILE)
    (root / "src" / "app.py").write_text("print('hi')\n")
    (root / "src" / "pkg" / "util.py").write_text("X = 1\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "current").symlink_to("src")
    (root / "build.log").write_text("noise\n")
    (root / ".dockerignore").write_text("*.log\n")
    return root


def age(root: Path) -> None:
    """Give every file an old mtime, as a checkout that was not just written has."""
    for path in [root, *root.rglob("*")]:
        os.utime(path, (LONG_AGO, LONG_AGO), follow_symlinks=False)


def spec(root: Path, **overrides) -> ImageSpec:
    fields = {
        "name": "app",
        "context": root,
        "dockerfile": root / "Dockerfile",
        "context_rel": "images/app",
        "dockerfile_rel": "images/app/Dockerfile",
        "build_args": {"GREETING": "hi"},
        "labels": {"team": "web"},
    }
    fields.update(overrides)
    return ImageSpec(**fields)


def inputs_of(root: Path, cache: HashCache | None = None, **overrides) -> ImageInputs:
    s = spec(root, **{k: v for k, v in overrides.items() if k not in ("parents", "upstream")})
    files = context_files(s.context, s.dockerfile)
    return image_inputs(
        s,
        s.dockerfile.read_bytes(),
        files,
        overrides.get("parents", {"base": "sha256:" + "b" * 64}),
        overrides.get("upstream", {"debian:bookworm-slim": "sha256:" + "d" * 64}),
        cache if cache is not None else HashCache(),
    )


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    return write_context(tmp_path / "app")


def test_the_fingerprint_is_sha256_of_the_canonical_json(ctx):
    inputs = inputs_of(ctx)
    canonical = json.dumps(inputs.to_json(), sort_keys=True, separators=(",", ":"))
    assert inputs.fingerprint == "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def test_files_map_kind_mode_and_content(ctx):
    (ctx / "run.sh").chmod(0o755)
    (ctx / "src" / "app.py").chmod(0o644)
    (ctx / "src").chmod(0o755)
    files = inputs_of(ctx).files
    sha = hashlib.sha256(b"print('hi')\n").hexdigest()
    assert files["src/app.py"] == f"f644:{sha}"
    assert files["run.sh"].startswith("f755:")
    assert files["src"] == "d755"
    assert files["current"] == "l:src"
    assert "build.log" not in files  # ignored, so not an input
    assert sorted(files) == [
        ".dockerignore",
        "Dockerfile",
        "current",
        "run.sh",
        "src",
        "src/app.py",
        "src/pkg",
        "src/pkg/util.py",
    ]
    assert inputs_of(ctx).dockerfile == hashlib.sha256(DOCKERFILE.encode()).hexdigest()


def test_an_ignored_file_changes_nothing(ctx):
    before = inputs_of(ctx).fingerprint
    (ctx / "build.log").write_text("other noise, other size\n")
    (ctx / "new.log").write_text("more\n")
    assert inputs_of(ctx).fingerprint == before


def test_editing_adding_or_removing_a_file_changes_it(ctx):
    seen = {inputs_of(ctx).fingerprint}
    (ctx / "src" / "app.py").write_text("print('bye')\n")
    seen.add(inputs_of(ctx).fingerprint)
    (ctx / "src" / "new.py").write_text("")
    seen.add(inputs_of(ctx).fingerprint)
    (ctx / "src" / "pkg" / "util.py").unlink()
    seen.add(inputs_of(ctx).fingerprint)
    (ctx / "src" / "empty").mkdir()
    seen.add(inputs_of(ctx).fingerprint)
    assert len(seen) == 5


def test_a_mode_change_counts(ctx):
    before = inputs_of(ctx)
    (ctx / "run.sh").chmod(0o755)
    after = inputs_of(ctx)
    assert after.fingerprint != before.fingerprint
    assert after.files["run.sh"].split(":")[1] == before.files["run.sh"].split(":")[1]


def test_a_symlink_target_counts_and_is_not_followed(ctx):
    before = inputs_of(ctx).fingerprint
    (ctx / "src" / "app.py").write_text("changed through the real path\n")
    middle = inputs_of(ctx).fingerprint
    (ctx / "current").unlink()
    (ctx / "current").symlink_to("src/pkg")
    assert len({before, middle, inputs_of(ctx).fingerprint}) == 3


def test_the_dockerfile_counts(ctx):
    before = inputs_of(ctx)
    (ctx / "Dockerfile").write_text(DOCKERFILE + "RUN true\n")
    after = inputs_of(ctx)
    assert after.dockerfile != before.dockerfile
    assert after.fingerprint != before.fingerprint


def test_the_same_tree_in_another_directory_has_the_same_fingerprint(ctx, tmp_path):
    copy = tmp_path / "elsewhere" / "checkout"
    shutil.copytree(ctx, copy, symlinks=True)  # new inodes, new mtimes, new path
    assert inputs_of(copy).fingerprint == inputs_of(ctx).fingerprint


def test_listing_order_and_mtimes_do_not_matter(ctx):
    s = spec(ctx)
    files = context_files(s.context, s.dockerfile)
    shuffled = files[:]
    random.Random(1).shuffle(shuffled)
    parents = {"base": "sha256:" + "b" * 64}
    dockerfile = s.dockerfile.read_bytes()
    first = image_inputs(s, dockerfile, files, parents, {}, HashCache())
    again = image_inputs(s, dockerfile, shuffled, parents, {}, HashCache())
    assert again.fingerprint == first.fingerprint
    for path in ctx.rglob("*"):
        os.utime(path, (12345, 12345), follow_symlinks=False)  # touch, to the past
    touched = image_inputs(s, dockerfile, files, parents, {}, HashCache())
    assert touched.fingerprint == first.fingerprint


def test_parents_upstream_and_build_settings_move_it(ctx):
    base = inputs_of(ctx).fingerprint
    changed = [
        inputs_of(ctx, parents={"base": "sha256:" + "c" * 64}),
        inputs_of(ctx, parents={}),
        inputs_of(ctx, upstream={"debian:bookworm-slim": "sha256:" + "e" * 64}),
        inputs_of(ctx, upstream={"debian:bookworm-slim": ""}),
        inputs_of(ctx, build_args={"GREETING": "hello"}),
        inputs_of(ctx, build_args={"GREETING": "hi", "EXTRA": ""}),
        inputs_of(ctx, labels={"team": "ops"}),
        inputs_of(ctx, target="prod"),
        inputs_of(ctx, platform="linux/arm64"),
    ]
    prints = {base} | {c.fingerprint for c in changed}
    assert len(prints) == 1 + len(changed)


def test_to_json_from_json_round_trip(ctx):
    inputs = replace(inputs_of(ctx), target="prod", platform=None)
    data = json.loads(json.dumps(inputs.to_json()))  # as a state file stores it
    back = ImageInputs.from_json(data)
    assert back == inputs
    assert back.fingerprint == inputs.fingerprint


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.pop("files"),
        lambda d: d.update(files=["a"]),
        lambda d: d.update(dockerfile=None),
        lambda d: d.update(target=3),
        lambda d: d["build_args"].update(N=1),
    ],
)
def test_from_json_rejects_what_it_did_not_write(ctx, damage):
    data = inputs_of(ctx).to_json()
    damage(data)
    with pytest.raises(ValueError):
        ImageInputs.from_json(data)


# --------------------------------------------------------------------------- hash cache


def test_a_second_run_rereads_nothing_and_an_edit_is_one_miss(ctx):
    cache = HashCache()
    first = inputs_of(ctx, cache)
    assert (cache.hits, cache.misses) == (0, 5)  # 5 files, the Dockerfile among them
    cache.hits = cache.misses = 0
    assert inputs_of(ctx, cache) == first
    assert (cache.hits, cache.misses) == (5, 0)

    cache.hits = 0
    (ctx / "src" / "app.py").write_text("print('edited')\n")
    inputs_of(ctx, cache)
    assert (cache.hits, cache.misses) == (4, 1)


def test_a_dockerfile_outside_the_context_is_hashed_too(ctx, tmp_path):
    outside = tmp_path / "Dockerfile.shared"
    outside.write_text(DOCKERFILE + "RUN true\n")
    (ctx / "Dockerfile").unlink()
    cache = HashCache()
    inputs = inputs_of(ctx, cache, dockerfile=outside)
    assert inputs.dockerfile == hashlib.sha256(outside.read_bytes()).hexdigest()
    assert "Dockerfile" not in inputs.files
    # the context's four files; the Dockerfile is hashed from the bytes that are sent
    assert cache.misses == 4


def test_the_cache_survives_save_and_load(ctx, tmp_path):
    age(ctx)
    path = tmp_path / "state" / "hashcache.json"
    cache = HashCache()
    first = inputs_of(ctx, cache)
    assert cache.dirty
    cache.save(path)
    assert not cache.dirty and not list(path.parent.glob("*.tmp"))

    loaded = HashCache.load(path)
    assert inputs_of(ctx, loaded) == first
    assert loaded.misses == 0 and not loaded.dirty


def test_a_chmod_or_a_replaced_file_of_the_same_size_is_a_miss(ctx):
    age(ctx)
    cache = HashCache()
    inputs_of(ctx, cache)
    cache.misses = 0
    target = ctx / "src" / "app.py"
    target.chmod(0o600)
    inputs_of(ctx, cache)
    assert cache.misses == 1
    replacement = ctx / "tmp"
    replacement.write_text("print('HI')\n")  # same size, new inode
    os.utime(replacement, (LONG_AGO, LONG_AGO))
    replacement.replace(target)
    digest = hashlib.sha256(b"print('HI')\n").hexdigest()
    assert inputs_of(ctx, cache).files["src/app.py"].endswith(":" + digest)


@pytest.mark.parametrize(
    "content",
    [b"", b"{not json", b"[]", b'{"version": 99, "entries": {}}', b'{"version": 1, "entries": 5}'],
)
def test_a_corrupt_or_foreign_cache_file_is_an_empty_cache(ctx, tmp_path, content):
    path = tmp_path / "hashcache.json"
    path.write_bytes(content)
    cache = HashCache.load(path)
    assert len(cache) == 0
    assert inputs_of(ctx, cache) == inputs_of(ctx)


def test_broken_entries_are_misses_not_errors(ctx, tmp_path):
    age(ctx)
    path = tmp_path / "hashcache.json"
    cache = HashCache()
    inputs_of(ctx, cache)
    cache.save(path)
    data = json.loads(path.read_text())
    for i, key in enumerate(sorted(data["entries"])):
        data["entries"][key] = [None, "x", 5, {}][i % 4]
    path.write_text(json.dumps(data))
    loaded = HashCache.load(path)
    assert inputs_of(ctx, loaded) == inputs_of(ctx)
    assert loaded.misses == 5


def test_a_missing_cache_file_is_an_empty_cache(tmp_path):
    assert len(HashCache.load(tmp_path / "nope.json")) == 0


def test_an_unwritable_cache_location_is_not_an_error(ctx, tmp_path):
    cache = HashCache()
    inputs_of(ctx, cache)
    (tmp_path / "file").write_text("")
    assert cache.save(tmp_path / "file" / "hashcache.json") is False  # parent is a file
    assert cache.dirty


def test_digests_of_files_written_just_now_are_used_but_not_saved(ctx, tmp_path):
    # racily clean (as git says): the file could still change within the same mtime tick
    age(ctx)
    fresh = ctx / "src" / "fresh.py"
    fresh.write_text("x = 1\n")
    os.utime(fresh, ns=(time.time_ns(), time.time_ns()))
    cache = HashCache()
    inputs_of(ctx, cache)
    cache.save(tmp_path / "hashcache.json")
    loaded = HashCache.load(tmp_path / "hashcache.json")
    inputs_of(ctx, loaded)
    assert loaded.misses == 1


def test_big_files_are_hashed_in_chunks(tmp_path):
    big = tmp_path / "big"
    data = os.urandom(3 * (1 << 20) + 17)
    big.write_bytes(data)
    assert HashCache().digest(big, big.stat()) == hashlib.sha256(data).hexdigest()


def test_a_file_gone_since_listing_is_a_clear_error(ctx):
    s = spec(ctx)
    files = context_files(s.context, s.dockerfile)
    (ctx / "src" / "app.py").unlink()
    with pytest.raises(ContextError, match="app.py"):
        image_inputs(s, s.dockerfile.read_bytes(), files, {}, {}, HashCache())


def test_forget_unused_drops_files_no_context_holds_any_more(ctx, tmp_path):
    age(ctx)
    saved = tmp_path / "cache.json"
    first = HashCache()
    inputs_of(ctx, first)
    first.save(saved)
    (ctx / "run.sh").unlink()
    again = HashCache.load(saved)
    inputs_of(ctx, again)
    assert not again.dirty  # every lookup a hit
    again.forget_unused()
    assert again.dirty and len(again) == len(first) - 1
    again.save(saved)
    unchanged = HashCache.load(saved)
    inputs_of(ctx, unchanged)
    unchanged.forget_unused()
    assert not unchanged.dirty  # nothing dropped: a no-op run writes nothing
