"""Output that must not reach a terminal directly but go somewhere as lines.

:class:`LineStream` is a text stream that hands on what is written to it, a whole line or more at a
time: a group process's ``sys.stdout``/``sys.stderr`` while it forwards its output to the engine
(runtime/transport.py), the engine's standard error under ``--log-format json`` (monitor/jsonlog.py). A
``print`` writes its text and its newline in two calls; the stream waits for the newline, and keeps
together the lines one write brought.

:func:`captured_fd` catches what bypasses ``sys.stdout``: writes to the file descriptor itself (a C
extension's ``printf``, ``os.write(1, …)``, a child process that inherited it) go into a pipe whose
reader hands them on as lines too.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import os
import threading
from collections.abc import Callable, Iterator

CAPTURE_JOIN_SECONDS = 2.0  # how long the end of a capture waits for a reader kept open by a child process


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


@contextlib.contextmanager
def captured_fd(fd: int, on_text: Callable[[str], None], *, name: str = "output") -> Iterator[None]:
    """While the block runs, what is written to ``fd`` goes to ``on_text`` line by line (a pipe's reads
    cut anywhere, so a line is the only unit it has; the rest when the block ends); afterwards ``fd`` is
    what it was. A thread of its own reads the pipe."""
    read_end, write_end = os.pipe()
    saved = os.dup(fd)
    os.dup2(write_end, fd)
    os.close(write_end)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def pump() -> None:
        pending = ""
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                *lines, pending = (pending + decoder.decode(chunk)).split("\n")
                for line in lines:
                    on_text(line + "\n")
        if rest := pending + decoder.decode(b"", final=True):
            on_text(rest)

    reader = threading.Thread(target=pump, name=f"captured {name}", daemon=True)
    reader.start()
    try:
        yield
    finally:
        os.dup2(saved, fd)  # closes the pipe's last write end of ours: the reader sees its end
        os.close(saved)
        reader.join(CAPTURE_JOIN_SECONDS)


__all__ = ["LineStream", "captured_fd"]
