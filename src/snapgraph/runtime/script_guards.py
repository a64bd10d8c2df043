"""What a script must not be able to do to the engine that runs it.

A Gen2 script runs inside the engine's process (or its group's process), so
calls written for a program of its own would end or clone the engine:

* ``sys.exit(n)`` raises ``SystemExit`` on the operator's dispatcher thread;
  the dispatcher turns it into a failure of that operator naming the code
  (see :func:`describe_exit`), whatever its error handling.
* ``os._exit(n)`` would end the whole process at once. On a dispatcher
  thread it raises :class:`ScriptExit` instead, which fails the operator the
  same way. Elsewhere (the engine's own threads, forked children) it is the
  real ``os._exit``.
* ``os.fork()`` on a dispatcher thread clones the engine. The child is killed
  when the thread that forked it ends (Linux ``PR_SET_PDEATHSIG``), so no
  process outlives the run, and a child that returns from the callback into
  the engine's code is ended there (:func:`leave_if_forked`) before it can
  act as a second copy of the operator.

:func:`install` puts the ``os._exit`` guard and the fork hook in place once
per process; :func:`dispatcher` marks the calling thread as an operator's.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any, NoReturn

_PR_SET_PDEATHSIG = 1


class ScriptExit(BaseException):
    """``os._exit(code)`` called on an operator's dispatcher thread.

    A BaseException, so that a script's ``except Exception`` does not catch it.
    """

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class _Dispatcher(threading.local):
    operator: str | None = None
    pid: int | None = None  # the process the operator runs in (a forked child has another pid)
    forked: bool = False  # this is a child a script forked on the dispatcher thread (set by the fork hook)


_current = _Dispatcher()
_real_exit = os._exit
_installed = False
_install_lock = threading.Lock()


def install() -> None:
    """Guard ``os._exit`` and watch forks in this process (idempotent)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        os._exit = _guarded_exit  # type: ignore[assignment]
        os.register_at_fork(after_in_child=_after_fork_in_child)
        _installed = True


def dispatcher(operator: str) -> None:
    """Mark the calling thread as ``operator``'s dispatcher in this process."""
    install()
    _current.operator = operator
    _current.pid = os.getpid()


def describe_exit(exc: BaseException) -> str | None:
    """How a script tried to end the process, or None if ``exc`` is not such an attempt."""
    if isinstance(exc, ScriptExit):
        return f"the script called os._exit({exc.code})"
    if isinstance(exc, SystemExit):
        return f"the script called sys.exit({exc.code!r})" if exc.code is not None else "the script called sys.exit()"
    return None


def leave_if_forked() -> None:
    """Called when a script callback returns: end this process if it is a child the script forked.

    Called after every callback, so it reads a flag the fork hook set rather than asking for the pid.
    """
    if _current.forked:
        _forked_child_returned(_current.operator or "?")


def _forked_child_returned(operator: str) -> NoReturn:
    try:
        sys.stderr.write(f"[{operator}] WARNING: a process this operator forked (pid {os.getpid()}) returned "
                         "from its callback into the engine; it ends here\n")
        sys.stderr.flush()
    finally:
        _real_exit(0)


def _guarded_exit(code: int) -> Any:
    if _current.pid is not None and _current.pid == os.getpid():
        raise ScriptExit(code)
    _real_exit(code)


def die_with_parent() -> None:
    """Ask Linux to SIGKILL the calling process when the thread that started it ends (best effort elsewhere)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _after_fork_in_child() -> None:
    if _current.pid is not None:  # forked by a script on a dispatcher thread
        _current.forked = True
        die_with_parent()


__all__ = ["ScriptExit", "describe_exit", "die_with_parent", "dispatcher", "install", "leave_if_forked"]
