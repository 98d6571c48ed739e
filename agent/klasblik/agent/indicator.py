"""The visible sign: while a teacher watches, a small always-on-top window says who and how.

The window runs in a child process of its own (``klasblik-agent --indicator-window``, or
``python -m klasblik.agent.indicator``), for three reasons: macOS draws windows only from
a process's main thread, a student who kills the window (xkill, Task Manager) ends only
that child, and Xlib ends the process whose display connection is cut. The agent asks
the child to show a text and waits for its answer (``shown``) before every capture; a
child that has gone, or cannot show its window, is a ``capture_error`` and no capture.

Backends (setting ``indicator``):

- ``x11``: libX11 through ctypes (:mod:`klasblik.agent.indicator_x11`), the default on
  Linux and BSD. An override-redirect window (no window manager can minimise or close it)
  that maps itself again when unmapped and raises itself when covered.
- ``tk``: Tkinter (:mod:`klasblik.agent.indicator_tk`), the default on Windows and macOS,
  where Python's installers and PyInstaller ship Tk; also runs on X11 (tested there).

The text names every viewer and the mode, in Dutch or English (setting ``language``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence

__all__ = [
    "INDICATOR_BACKENDS",
    "WatchIndicator",
    "child_command",
    "default_backend",
    "indicator_text",
    "main",
]

log = logging.getLogger("klasblik.agent.indicator")

INDICATOR_BACKENDS = ("auto", "x11", "tk")
CHILD_FLAG = "--indicator-window"
#: How long the child may take to show its window (start of a frozen build included).
SHOW_TIMEOUT_S = 15.0

_TEXTS = {
    "nl": {
        "one": "{names} kijkt nu mee",
        "many": "{names} kijken nu mee",
        "grid": "overzicht",
        "focus": "close-up",
        "and": " en ",
    },
    "en": {
        "one": "{names} is watching your screen",
        "many": "{names} are watching your screen",
        "grid": "grid",
        "focus": "close-up",
        "and": " and ",
    },
}


def indicator_text(viewers: Sequence[str], mode: str, language: str) -> str:
    """``Klasblik: Mw. Jansen kijkt nu mee (overzicht)`` and its English twin."""
    words = _TEXTS.get(language, _TEXTS["en"])
    names = [v.strip() for v in viewers if v.strip()] or ["?"]
    joined = names[0] if len(names) == 1 else ", ".join(names[:-1]) + words["and"] + names[-1]
    sentence = words["one" if len(names) == 1 else "many"].format(names=joined)
    return f"Klasblik: {sentence} ({words.get(mode, mode)})"


def default_backend(platform: str = sys.platform) -> str:
    return "tk" if platform in ("win32", "darwin") else "x11"


def child_command(backend: str) -> list[str]:
    """How to start the window process: the frozen program itself, or this module."""
    if getattr(sys, "frozen", False):
        return [sys.executable, CHILD_FLAG, backend]
    return [sys.executable, "-m", "klasblik.agent.indicator", backend]


class WatchIndicator:
    """The agent's side: start, update and stop the window process."""

    def __init__(
        self, language: str = "nl", backend: str = "auto", display: str | None = None
    ) -> None:
        self.language = language
        self.backend = default_backend() if backend == "auto" else backend
        self.display = display
        self._proc: asyncio.subprocess.Process | None = None
        self._text: str | None = None
        #: the window process's id while it runs (tests look the window up by it)
        self.pid: int | None = None

    @property
    def showing(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def ensure(self, viewers: Sequence[str], mode: str) -> str | None:
        """Show (or keep showing) the sign; None when it is up, else why it is not."""
        text = indicator_text(viewers, mode, self.language)
        proc = self._proc
        if proc is not None and proc.returncode is not None:
            reason = await self._gone(proc)
            self._proc = None
            return reason
        if proc is None:
            try:
                proc = await self._start()
            except OSError as exc:
                return f"the watched indicator cannot start: {exc}"
            self._proc = proc
            self._text = None
        if text == self._text:
            return None
        try:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write((json.dumps({"show": text}) + "\n").encode())
            await proc.stdin.drain()
            async with asyncio.timeout(SHOW_TIMEOUT_S):
                line = await proc.stdout.readline()
        except (OSError, TimeoutError, ConnectionError):
            line = b""
        answer = line.decode(errors="replace").strip()
        if answer == "shown":
            self._text = text
            return None
        await self.hide()
        if answer.startswith("error "):
            return f"the watched indicator cannot be shown: {answer[6:]}"
        return "the watched indicator cannot be shown: its window did not appear"

    async def _start(self) -> asyncio.subprocess.Process:
        env = dict(os.environ)
        if self.display is not None:
            env["DISPLAY"] = self.display
        proc = await asyncio.create_subprocess_exec(
            *child_command(self.backend),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        self.pid = proc.pid
        return proc

    async def _gone(self, proc: asyncio.subprocess.Process) -> str:
        detail = ""
        if proc.stderr is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    tail = await proc.stderr.read(2000)
                lines = tail.decode(errors="replace").strip().splitlines()
                detail = f": {lines[0].strip()[:160]}" if lines else ""
        log.warning("the watched indicator ended (exit %s)%s", proc.returncode, detail)
        return f"the watched indicator was closed (exit {proc.returncode}){detail}"

    async def hide(self) -> None:
        """Take the sign away (end the window process)."""
        proc, self._proc, self._text = self._proc, None, None
        if proc is None or proc.returncode is not None:
            return
        try:
            assert proc.stdin is not None
            proc.stdin.close()
            async with asyncio.timeout(3):
                await proc.wait()
        except (TimeoutError, OSError):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """The window process: read ``{"show": text}`` lines, answer ``shown``; end at EOF."""
    args = list(sys.argv[1:] if argv is None else argv)
    backend = args[0] if args else default_backend()
    if backend == "tk":
        from klasblik.agent.indicator_tk import run_tk

        return run_tk(sys.stdin, sys.stdout)
    from klasblik.agent.indicator_x11 import run_x11

    return run_x11(sys.stdin, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
