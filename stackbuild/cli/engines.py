"""The engines a command works on: the one of DOCKER_HOST, or stack.yaml's pool.

The CLI is where the implementation is picked: ``open_backend`` (a ``DockerEngine``
with the classic or the BuildKit builder), handed to orchestration as a ``Backend``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from stackbuild.analyze import Analysis
from stackbuild.backends import open_backend
from stackbuild.backends.contract import Backend
from stackbuild.cli.common import warn
from stackbuild.manifest import EngineSpec, Stack, load_stack
from stackbuild.plan import Plan
from stackbuild.run.existing import Existing, existing_images
from stackbuild.run.pool import EnginePool, open_pool
from stackbuild.run.upstream import pinned_analysis

Warn = Callable[[str], None]


def open_engine(kind: str = "auto") -> Backend:
    """The engine of DOCKER_HOST (and its defaults), pinged: it answers, or exit 3."""
    backend = open_backend(kind)
    backend.ping()
    return backend


def open_engine_pool(
    stack: Stack, builders: Sequence[EngineSpec], kind: str, from_options: bool = False
) -> EnginePool:
    """The pool of ``builders``, each engine building with the ``kind`` builder."""

    def engine(spec: EngineSpec) -> Backend:
        return open_backend(kind, spec.url, spec.tls, spec.name or spec.url)

    return open_pool(stack, builders, engine, warn, from_options=from_options)


def plan_engines(stack: Stack) -> tuple[Backend, EnginePool | None]:
    """``(backend, pool)`` for plan: stack.yaml's builders as a pool (an image on any of
    its engines exists), else the engine of docker.from_env() and None."""
    if not stack.builders:
        return open_engine(), None
    pool = open_engine_pool(stack, stack.builders, stack.backend)
    return pool.alive[0].backend, pool


def existing_on(
    analysis: Analysis, backend: Backend, pool: EnginePool | None, warn: Warn = warn
) -> Existing:
    """``Existing`` on the pool's engines, or on ``backend``, then the registry."""
    return existing_images(analysis, backend, warn, pool.discover(analysis) if pool else None)


def plan_now(
    stack_file: Path, targets: Iterable[str], with_descendants: bool, force: Iterable[str] = ()
) -> tuple[Analysis, Plan]:
    """The plan a build would follow now: the lock's pins (missing ones resolved, not
    written) and what the engines or the registry already hold."""
    stack = load_stack(stack_file)
    backend, pool = plan_engines(stack)
    analysis = pinned_analysis(
        stack, targets, with_descendants, backend, write=False, warn=warn
    )
    return analysis, analysis.plan(existing_on(analysis, backend, pool).where(), force)
