"""The watched indicator with Tkinter: Windows and macOS (and X11, where it is tested).

A borderless (override-redirect) topmost window in the top-right corner. Every half
second it checks it is still mapped and on top (``deiconify``, ``lift``, ``-topmost``),
and it does so at once when it is unmapped. Tk runs on this process's main thread, as
macOS requires.
"""

from __future__ import annotations

import json
import queue
import threading
from typing import IO, Any

__all__ = ["run_tk"]

BACKGROUND = "#b71c1c"
FOREGROUND = "#ffffff"
CHECK_MS = 500


def _read_commands(stream: IO[str], commands: queue.Queue[str | None]) -> None:
    for line in stream:
        commands.put(line)
    commands.put(None)


def run_tk(stdin: IO[str], stdout: IO[str]) -> int:
    try:
        import tkinter
    except ImportError as exc:
        stdout.write(f"error Tk is not available in this Python ({exc})\n")
        stdout.flush()
        return 3
    try:
        root = tkinter.Tk(className="klasblik-indicator")
    except tkinter.TclError as exc:
        stdout.write(f"error {exc}\n")
        stdout.flush()
        return 3
    root.withdraw()
    root.overrideredirect(True)
    root.configure(background=BACKGROUND)
    try:
        root.attributes("-topmost", True)
    except tkinter.TclError:
        pass
    label = tkinter.Label(
        root,
        text="",
        background=BACKGROUND,
        foreground=FOREGROUND,
        font=("TkDefaultFont", 11, "bold"),
        padx=8,
        pady=4,
    )
    label.pack()
    commands: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_read_commands, args=(stdin, commands), daemon=True).start()
    state: dict[str, Any] = {"wanted": False}

    def place() -> None:
        root.update_idletasks()
        width = root.winfo_reqwidth()
        x = max(0, root.winfo_screenwidth() - width - 12)
        root.geometry(f"+{x}+12")

    def keep_up() -> None:
        if state["wanted"]:
            if not root.winfo_ismapped():
                root.deiconify()
            root.lift()
            try:
                root.attributes("-topmost", True)
            except tkinter.TclError:
                pass

    def poll() -> None:
        while True:
            try:
                line = commands.get_nowait()
            except queue.Empty:
                break
            if line is None:
                root.destroy()
                return
            try:
                text = str(json.loads(line)["show"])
            except (ValueError, KeyError, TypeError):
                stdout.write("error bad request\n")
                stdout.flush()
                continue
            label.configure(text=text)
            root.title(text)
            state["wanted"] = True
            place()
            root.deiconify()
            keep_up()
            root.update()
            stdout.write("shown\n" if root.winfo_ismapped() else "error window not mapped\n")
            stdout.flush()
        keep_up()
        root.after(CHECK_MS // 5 if commands.empty() else 0, poll)

    root.bind("<Unmap>", lambda _e: root.after_idle(keep_up))
    root.after(0, poll)
    root.mainloop()
    return 0
