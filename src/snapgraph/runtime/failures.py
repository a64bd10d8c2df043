"""Why an operator failed: the failure record and the one-line descriptions in it."""

from __future__ import annotations

from dataclasses import dataclass

from snapgraph.runtime import script_guards
from snapgraph.runtime.scripts import format_script_error, script_line


@dataclass
class OperatorFailure:
    """Why an operator failed: which process, in which callback, and the script traceback."""

    process: str
    phase: str
    message: str
    traceback: str
    invalid: bool = False  # the script itself is unusable (exit 2), not a run-time failure

    def __str__(self) -> str:
        return f"operator {self.process!r} failed in {self.phase}: {self.message}"


class UndeliverableMessage(Exception):
    """A message from another group that cannot be rebuilt in the receiving process."""


class InvalidOperator(Exception):
    """An operator that cannot run as declared (reported with exit code 2)."""


def script_failure(process: str, phase: str, exc: BaseException) -> OperatorFailure:
    """The failure of ``process`` in ``phase`` because a script raised ``exc`` (with the script's line)."""
    where = script_line(exc)
    message = describe(exc) + (f" (at {where})" if where else "")
    return OperatorFailure(process, phase, message, format_script_error(exc))


def describe(exc: BaseException) -> str:
    """One line on what a script raised; an attempt to end the process says so, with its code."""
    return script_guards.describe_exit(exc) or one_line(exc)


def one_line(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
