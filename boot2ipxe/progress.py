"""Download progress on a terminal: one status line on stderr, rewritten in place, cleared when done."""

from __future__ import annotations

import shutil
import threading
import time
from typing import TextIO

from boot2ipxe.units import human_size


class TtyProgress:
    """A fetch ``Reporter`` that shows running downloads; thread-safe, at most ten redraws a second."""

    def __init__(self, stream: TextIO, interval: float = 0.1) -> None:
        self.stream = stream
        self.interval = interval
        self._lock = threading.Lock()
        self._running: dict[str, tuple[int, int | None]] = {}
        self._last = 0.0
        self._shown = False

    def progress(self, label: str, done: int, total: int | None) -> None:
        with self._lock:
            self._running[label] = (done, total)
            finished = total is not None and done >= total
            if finished:
                del self._running[label]
            now = time.monotonic()
            if finished or now - self._last >= self.interval:
                self._last = now
                self._draw()

    def outcome(self, outcome: object) -> None:
        with self._lock:
            self._clear()

    def print_line(self, text: str, stream: TextIO) -> None:
        """Print a line to ``stream`` (e.g. stdout) without tearing the status line, then redraw it."""
        with self._lock:
            self._clear()
            stream.write(text + "\n")
            stream.flush()
            self._draw()

    def close(self) -> None:
        with self._lock:
            self._running.clear()
            self._clear()

    def _draw(self) -> None:
        parts = []
        for label, (done, total) in self._running.items():
            amount = f"{human_size(done)}/{human_size(total)}" if total else human_size(done)
            percent = f" {100 * done // total}%" if total else ""
            parts.append(f"{label}{percent} ({amount})")
        if not parts:
            self._clear()
            return
        width = shutil.get_terminal_size((80, 24)).columns - 1
        line = "fetching " + ", ".join(parts)
        if len(line) > width:
            line = line[: width - 1] + "…"
        self.stream.write("\r\x1b[K" + line)
        self.stream.flush()
        self._shown = True

    def _clear(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False
