""".stackbuild/: atomic writes, build records, the run lock."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from stackbuild.errors import EXIT_USAGE, LockBusy
from stackbuild.fingerprint import ImageInputs
from stackbuild.state import BuildRecord, StateDir, atomic_write, safe_filename


def inputs() -> ImageInputs:
    return ImageInputs(
        dockerfile="d" * 64,
        files={"app.py": "f644:" + "1" * 64},
        build_args={"A": "1"},
        labels={},
        target=None,
        platform=None,
        parents={"base": "sha256:" + "2" * 64},
        upstream={"debian:bookworm-slim": ""},
    )


def record(image: str = "app") -> BuildRecord:
    i = inputs()
    return BuildRecord(
        image=image,
        fingerprint=i.fingerprint,
        inputs=i,
        duration_s=1.5,
        built_at=1700000000.0,
        tags=[f"{image}:abc", f"{image}:latest"],
        image_id="sha256:" + "3" * 64,
        engine="unix:///var/run/docker.sock",
    )


# -- atomic_write ------------------------------------------------------------------------


def test_atomic_write_creates_directories_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "file.json"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert os.listdir(target.parent) == ["file.json"]


def test_atomic_write_failure_keeps_the_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "file.json"
    atomic_write(target, b"old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["file.json"]


def test_atomic_write_interrupted_while_writing_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "file.json", b"data")
    assert os.listdir(tmp_path) == []


# -- records -----------------------------------------------------------------------------


def test_record_round_trip(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    state.save_record(record())
    loaded = state.load_record("app")
    assert loaded == record()
    assert loaded.inputs.fingerprint == record().fingerprint
    data = json.loads(state.record_path("app").read_text())
    assert data["fingerprint"] == record().fingerprint
    assert [p.name for p in state.images.iterdir()] == ["app.json"]


def test_image_names_with_slashes_get_one_flat_file(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    state.save_record(record("tools/lint"))
    assert state.load_record("tools/lint").image == "tools/lint"
    assert [p.name for p in state.images.iterdir()] == [f"{safe_filename('tools/lint')}.json"]
    assert "/" not in safe_filename("tools/lint")
    assert state.log_path("tools/lint").parent == state.logs


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b'{"image": "app"',  # cut short
        b"[]",
        b'{"image": "app"}',  # fields missing
        b'{"image": "app", "fingerprint": "x", "inputs": {"files": 3}}',
        b"\xff\xfe\x00garbage",
    ],
)
def test_a_corrupt_record_reads_as_none(tmp_path: Path, content: bytes) -> None:
    state = StateDir(tmp_path)
    state.record_path("app").parent.mkdir(parents=True)
    state.record_path("app").write_bytes(content)
    assert state.load_record("app") is None


def test_missing_record_is_none_and_forget_removes(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    assert state.load_record("app") is None
    state.save_record(record())
    state.forget("app")
    state.forget("app")  # already gone: fine
    assert state.load_record("app") is None


def test_load_records_is_load_record_of_each_image(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    assert state.load_records(["app", "tools/lint"]) == {"app": None, "tools/lint": None}
    state.save_record(record("tools/lint"))
    state.record_path("bad").write_bytes(b"{not json")
    loaded = state.load_records(["app", "tools/lint", "bad"])
    assert loaded == {"app": None, "tools/lint": record("tools/lint"), "bad": None}
    state.save_record(record())  # written after an earlier listing: seen by the next one
    assert state.load_records(["app"]) == {"app": record()}


# -- the run lock ------------------------------------------------------------------------


def test_second_run_lock_without_wait_raises_lock_busy_naming_the_pid(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    with state.run_lock(wait=False):
        assert state.lock_file.read_text() == str(os.getpid())
        with pytest.raises(LockBusy) as info, state.run_lock(wait=False):
            pass
        message = str(info.value)
        assert f"pid {os.getpid()}" in message
        assert str(state.lock_file) in message
        assert "--no-wait" in message
        assert info.value.exit_code == EXIT_USAGE
    # released: the next run gets it
    with state.run_lock(wait=False):
        pass


def test_run_lock_waits_for_the_holder_and_says_so(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    messages: list[str] = []
    acquired = threading.Event()

    def second_run() -> None:
        with state.run_lock(wait=True, notify=messages.append):
            acquired.set()

    with state.run_lock():
        thread = threading.Thread(target=second_run)
        thread.start()
        time.sleep(0.3)
        assert not acquired.is_set()
    thread.join(5)
    assert acquired.is_set()
    assert len(messages) == 2
    assert f"(pid {os.getpid()})" in messages[0] and "waiting" in messages[0]
    assert messages[1].startswith("lock acquired after ")


def test_run_lock_is_released_when_the_body_raises(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    with pytest.raises(RuntimeError), state.run_lock(wait=False):
        raise RuntimeError("build crashed")
    with state.run_lock(wait=False):
        pass
