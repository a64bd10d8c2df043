"""A text stream that hands on what is written to it, a whole line or more at a time.

Used wherever output must not reach a terminal directly but go somewhere as lines: a group process's
``sys.stdout``/``sys.stderr`` while it forwards its output to the engine (runtime/transport.py), the
engine's standard error under ``--log-format json`` (monitor/jsonlog.py). A ``print`` writes its text and
its newline in two calls; the stream waits for the newline, and keeps together the lines one write
brought.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable


class LineStream(io.TextIOBase):
    """Calls ``on_text(text)`` once what was written ends with a newline (and with the rest on flush)."""

    def __init__(self, on_text: Callable[[str], None], encoding: str = "utf-8") -> None:
        super().__init__()
        self._on_text = on_text
        self._encoding = encoding
        self._pending = ""
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:  # type: ignore[override]  # a plain attribute in typeshed, read-only here
        return self._encoding

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            if not self._pending.endswith("\n"):
                return len(text)
            ready, self._pending = self._pending, ""
        self._on_text(ready)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            ready, self._pending = self._pending, ""
        if ready:
            self._on_text(ready)


__all__ = ["LineStream"]
