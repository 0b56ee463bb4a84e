"""``save -o PATH``, the writing side (a fake engine): what is at PATH decides how it is
written; ``load`` reads it back."""

from __future__ import annotations

import errno
import os
import stat
import threading
from pathlib import Path

import pytest

from stackbuild.errors import StackbuildError, UsageError
from stackbuild.run import archive
from stackbuild.run.archive import Saved, SaveError, open_output
from tests.fakes import SAVE_CHUNK, FakeBackend

CHUNK = b"x" * (1 << 16)


def engine(chunks: int = 4) -> FakeBackend:
    """An engine holding app:latest, whose saved tar is about ``chunks`` writes long."""
    backend = FakeBackend()
    backend.add_image("sha256:app", ["app:latest"], labels={"k": "v"}, size=chunks * SAVE_CHUNK)
    return backend


@pytest.fixture(autouse=True)
def _one_built_image(monkeypatch: pytest.MonkeyPatch) -> None:
    built = [Saved("app", "sha256:" + "0" * 64, ("app:latest",))]
    monkeypatch.setattr(archive, "images_to_save", lambda analysis, backend: built)


def save_to(path: Path, chunks: int = 4) -> bytes:
    """Save app:latest to ``path``; the bytes the engine streamed."""
    backend = engine(chunks)
    archive.save(None, backend, path)  # type: ignore[arg-type]  # images_to_save is patched
    assert backend.done("save") == ["app:latest"]
    return backend.archive(["app:latest"])


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_a_new_file_is_written_whole_in_a_new_directory(tmp_path: Path) -> None:
    out = tmp_path / "out" / "images.tar"
    streamed = save_to(out)
    assert len(streamed) > 4 * SAVE_CHUNK  # several writes
    assert out.read_bytes() == streamed
    assert leftovers(out.parent) == []


def test_a_regular_file_is_replaced_keeping_its_mode(tmp_path: Path) -> None:
    out = tmp_path / "images.tar"
    out.write_bytes(b"old")
    out.chmod(0o640)
    streamed = save_to(out)
    assert out.read_bytes() == streamed
    assert stat.S_IMODE(out.stat().st_mode) == 0o640


def test_a_failed_save_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    out = tmp_path / "images.tar"
    out.write_bytes(b"old")
    with pytest.raises(RuntimeError), open_output(out) as handle:
        handle.write(CHUNK)
        raise RuntimeError("the engine failed mid-stream")
    assert out.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_a_symlink_stays_and_its_target_is_replaced(tmp_path: Path) -> None:
    target = tmp_path / "real.tar"
    target.write_bytes(b"old")
    link = tmp_path / "link.tar"
    link.symlink_to(target.name)
    streamed = save_to(link)
    assert link.is_symlink()
    assert target.read_bytes() == streamed


def test_a_fifo_is_streamed_into_not_replaced(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    streamed = save_to(fifo)
    reader.join(30)
    assert received == [streamed]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_fifo_whose_reader_leaves_is_a_save_error(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    def read_a_little() -> None:
        with open(fifo, "rb") as f:
            f.read(1)

    reader = threading.Thread(target=read_a_little, daemon=True)
    reader.start()
    # a broken pipe is a ConnectionError: the engine client must not take it for its own
    with pytest.raises(SaveError, match=r"cannot write .*pipe: Broken pipe"):
        save_to(fifo, chunks=64)
    reader.join(30)


def _device(path: Path, minor: int) -> Path:
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, minor))
    except OSError:
        pytest.skip("cannot create device files here (needs root)")
    return path


def test_a_character_device_is_written_into_not_replaced(tmp_path: Path) -> None:
    null = _device(tmp_path / "null", 3)  # what /dev/null is
    save_to(null)
    assert stat.S_ISCHR(os.lstat(null).st_mode)
    assert leftovers(tmp_path) == []


def test_a_full_device_is_a_save_error(tmp_path: Path) -> None:
    full = _device(tmp_path / "full", 7)  # /dev/full: every write fails with ENOSPC
    with pytest.raises(SaveError, match="No space left on device"):
        save_to(full)
    assert stat.S_ISCHR(os.lstat(full).st_mode)


def test_a_full_file_system_is_a_save_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    out = tmp_path / "images.tar"
    with pytest.raises(SaveError, match=r"images\.tar: No space left on device"):
        save_to(out)
    assert not out.exists() and leftovers(tmp_path) == []


def test_a_place_that_refuses_files_is_a_save_error() -> None:
    with pytest.raises(SaveError, match=r"cannot write /proc/stackbuild-test\.tar"):
        save_to(Path("/proc/stackbuild-test.tar"))


def test_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "to-d").symlink_to("d")
    for path in (tmp_path / "d", tmp_path / "to-d"):
        with pytest.raises(UsageError, match="it is a directory"):
            save_to(path)
    assert (tmp_path / "to-d").is_symlink()


def test_a_path_below_a_file_is_a_save_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(SaveError, match="cannot write"):
        save_to(tmp_path / "file" / "images.tar")


def test_what_save_wrote_loads_on_another_engine_with_its_tags_and_labels(
    tmp_path: Path,
) -> None:
    out = tmp_path / "images.tar"
    save_to(out)
    other = FakeBackend("fake://other")
    lines: list[str] = []
    assert archive.load(other, out, lines.append) == ["app:latest"]
    assert lines == ["Loaded image: app:latest"]
    assert other.image_id("app:latest") == "sha256:app"
    assert other.image_labels("app:latest") == {"k": "v"}


def test_a_file_that_cannot_be_read_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StackbuildError, match=r"cannot read .*missing\.tar"):
        archive.load(FakeBackend(), tmp_path / "missing.tar")
