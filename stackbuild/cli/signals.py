"""Signals, from the first instruction to the last: Ctrl-C or SIGTERM is exit 130.

Before ``main`` runs (the imports) a signal ends the process at once; inside ``main``
it raises KeyboardInterrupt so locks and temporary files are released; a build run
installs its own handlers on top (``commands/build.py``: stop, cancel, then this).
Stdlib only: it is imported, and installed, before anything that takes a while.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

# typing.TYPE_CHECKING (which mypy reads by its name) without importing typing at run time:
# this module runs before anything that takes a while
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType


def exit_interrupted(signum: int, frame: object) -> None:
    """Before ``main`` runs (imports: nothing to clean up) and once an interrupt is already
    on its way out: end now, with the code a first interrupt gives."""
    with contextlib.suppress(OSError):
        os.write(2, b"\ninterrupted\n")
    os._exit(130)


def raise_interrupt(signum: int, frame: object) -> None:
    """Inside ``main``: unwind (locks released, temporary files removed). Any further
    signal ends at once: a KeyboardInterrupt raised while the first one unwinds would
    escape every handler and end the process by SIGINT instead of exit 130."""
    handle_signals(exit_interrupted)
    raise KeyboardInterrupt


def exit_on_swallowed_interrupt(unraisable: sys.UnraisableHookArgs) -> None:
    """``sys.unraisablehook`` inside ``main``: a KeyboardInterrupt raised where Python cannot
    propagate it (a weakref callback or ``__del__``, run during an import or a collection)
    is only printed and then lost, and the command would go on as if never interrupted
    (seen: a run waiting on its input for good after Ctrl-C). End at once, exit 130, as a
    second signal does; any other unraisable error keeps Python's own report."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        exit_interrupted(signal.SIGINT, None)
    sys.__unraisablehook__(unraisable)


def handle_signals(handler: Callable[[int, FrameType | None], None]) -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may set handlers (and only it receives signals)
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is not signal.SIG_IGN:  # nohup/&: stay ignored
            signal.signal(signum, handler)


def ignore_signals_at_exit() -> None:
    """Registered with atexit by ``main``: while the interpreter shuts down after the last
    atexit call it resets handlers to the default, and a signal then would end the
    process by that signal instead of with the exit code decided (130 or another)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is exit_interrupted:
            signal.signal(signum, signal.SIG_IGN)


def is_the_program() -> bool:
    """Whether this process is stackbuild (``python -m stackbuild`` or the console
    script), not a program that imports the module (tests, a library user)."""
    main_module = sys.modules.get("__main__")
    spec = getattr(main_module, "__spec__", None)
    if spec is not None:
        return bool(spec.name == "stackbuild.__main__")
    return os.path.basename(getattr(main_module, "__file__", None) or "") == "stackbuild"
