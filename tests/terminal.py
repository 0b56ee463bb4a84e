"""What a terminal would show: a stream that says it is one, and pyte's emulator to read it.

The live view moves the cursor and clears the screen; the test of what it leaves
behind is what a real terminal would display, not the bytes written, so the bytes go
through pyte (a VT100 emulator), as a tty in cooked mode gets them (``\\n`` -> CR LF).
"""

from __future__ import annotations

import io

import pyte


class FakeTerminal(io.StringIO):
    """A StringIO that says it is a terminal (``isatty``), so a reporter takes it for one."""

    def isatty(self) -> bool:
        return True


def screen(written: str, columns: int = 100, lines: int = 60, newline: str = "\r\n") -> list[str]:
    """The screen after ``written``, one string a row, trailing blanks and rows dropped.
    ``newline``: what a line feed reaches the terminal as (a pty's own output already
    has CR LF: pass ``"\\n"``)."""
    display = pyte.Screen(columns, lines)
    pyte.Stream(display).feed(written.replace("\n", newline) if newline != "\n" else written)
    rows = [row.rstrip() for row in display.display]
    while rows and not rows[-1]:
        rows.pop()
    return rows
