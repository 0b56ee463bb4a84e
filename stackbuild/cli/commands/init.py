"""``stackbuild init [DIR]``: write a stack.yaml for a tree of Dockerfiles that has none.

The scan and the file are here; what the manifest says is ``stackbuild.adopt``'s.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from stackbuild.adopt import Found, adopt, dockerfile_suffix, render_stack
from stackbuild.analyze import read_dockerfiles
from stackbuild.cli.common import warn
from stackbuild.errors import StackbuildError, UsageError
from stackbuild.files import atomic_write
from stackbuild.graph import build_graph
from stackbuild.manifest import load_stack

# directories no image is built from: VCS data, dependencies, stackbuild's own state
SKIPPED_DIRS = frozenset({"node_modules", "__pycache__", "venv"})


def scan(root: Path) -> list[Found]:
    """Every Dockerfile under ``root`` (hidden and dependency directories skipped, no
    symlinked directory followed), in path order."""
    found: list[Found] = []
    for directory, subdirs, filenames in os.walk(root):
        subdirs[:] = sorted(
            d for d in subdirs if not d.startswith(".") and d not in SKIPPED_DIRS
        )
        for filename in sorted(filenames):
            if dockerfile_suffix(filename) is None:
                continue
            path = Path(directory, filename)
            try:
                text = path.read_bytes().decode("utf-8", "replace")
            except OSError as error:
                warn(f"stackbuild: skipped {path}: {error.strerror}")
                continue
            found.append(Found(path.relative_to(root).as_posix(), text))
    found.sort(key=lambda item: item.path.split("/"))
    return found


@click.command(name="init")
@click.argument(
    "directory", default=".", type=click.Path(file_okay=False, path_type=Path), metavar="[DIR]"
)
@click.option("--force", is_flag=True, help="Overwrite an existing stack.yaml.")
@click.option("--dry-run", is_flag=True, help="Print the stack.yaml instead of writing it.")
def init(directory: Path, force: bool, dry_run: bool) -> int:
    """Write DIR/stack.yaml for the Dockerfiles under DIR (default: here).

    Finds Dockerfile, Dockerfile.*, *.Dockerfile and Containerfile; names each image
    after its directory (or the file's suffix); infers the registry and build args
    under which the FROM lines name images of the stack, and says why in a comment
    per image.
    """
    if not directory.is_dir():
        raise UsageError(f"{directory} is not a directory")
    target = directory / "stack.yaml"
    if target.exists() and not force and not dry_run:
        raise UsageError(f"{target} exists; use --force to overwrite it (or --dry-run to see)")
    found = scan(directory)
    if not found:
        raise UsageError(
            f"no Dockerfile under {directory} (Dockerfile, Dockerfile.*, *.Dockerfile, "
            "Containerfile)"
        )
    adoption = adopt(found, directory.resolve().name)
    text = render_stack(adoption, str(directory))
    if dry_run:
        click.echo(text, nl=False)
        return 0
    atomic_write(target, text.encode())
    # read back as plan reads it: what the comments say must be what plan infers
    try:
        stack = load_stack(target)
        edges = set(build_graph(stack, read_dockerfiles(stack)[1]).edges())
    except StackbuildError as error:
        warn(f"stackbuild: warning: the written {target} does not load: {error}")
    else:
        if edges != adoption.edges():
            warn(f"stackbuild: warning: plan infers other parents from {target} than its "
                 "comments say; check them with: stackbuild ls")
    click.echo(
        f"wrote {target}: {len(found)} image(s); "
        f"check it with: stackbuild -f {target} plan --offline"
    )
    return 0
