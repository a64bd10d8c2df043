"""What chaos compares with the failure-free run: the user's check command, or the writers' taps.

A :class:`Comparison` prepares the graph file a schedule runs (the original, or a taped copy), observes
the result once the run completed, and says how an observation differs from the failure-free one (None:
it does not).

* :class:`CheckCommand` (``--check CMD``): a shell command run in the working directory after the run;
  its exit code and standard output are the observation (a query that prints a digest or the counts of
  the target table, for example).
* :class:`SinkComparison` (``--compare-sinks``): each writer input's tap (:mod:`~snapgraph.chaos.recorder`),
  read by the writer's kind.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from snapgraph.chaos.recorder import (
    RecorderError,
    Tap,
    describe_difference,
    effect,
    read_recording,
    taped_copy,
)

CHECK_TIMEOUT = 300.0  # seconds a --setup or --check command may take


class CommandFailed(Exception):
    """A --setup or --check command could not run, or failed where it must not."""


class Comparison(Protocol):
    description: str

    def prepare(self, graph_file: Path, folder: Path) -> Path:
        """The graph file a run in ``folder`` is to run."""

    def release(self, prepared: Path) -> None:
        """The run that used ``prepared`` is over (a copy goes)."""

    def observe(self, folder: Path) -> object:
        """The result of the completed run in ``folder``."""

    def difference(self, reference: object, observed: object) -> str | None:
        """How ``observed`` differs from the failure-free ``reference``; None if it does not."""


@dataclass(frozen=True)
class CommandOutput:
    returncode: int
    stdout: str


def run_command(command: str, cwd: Path, what: str) -> CommandOutput:
    """Run ``command`` with the shell in ``cwd``; its exit code and standard output (``what`` names it in
    errors: "--setup", "--check")."""
    try:
        done = subprocess.run(command, shell=True, cwd=cwd, capture_output=True, text=True, timeout=CHECK_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise CommandFailed(f"{what} {command!r} did not end within {CHECK_TIMEOUT:.0f}s") from None
    if done.returncode in (126, 127):
        raise CommandFailed(f"{what} {command!r} could not run (exit {done.returncode}): "
                            f"{done.stderr.strip()[-300:]}")
    return CommandOutput(done.returncode, done.stdout)


def _first_difference(expected: str, actual: str) -> str:
    want, have = expected.splitlines(), actual.splitlines()
    for index in range(max(len(want), len(have))):
        a = want[index] if index < len(want) else "<no line>"
        b = have[index] if index < len(have) else "<no line>"
        if a != b:
            return f"line {index + 1}: {b[:300]!r} (failure-free: {a[:300]!r})"
    return "the same lines"


class CheckCommand:
    """``--check CMD``: the command's exit code and standard output after the run."""

    def __init__(self, command: str, cwd: Path) -> None:
        self.command = command
        self.cwd = cwd
        self.description = f"the output of --check {command!r}"

    def prepare(self, graph_file: Path, folder: Path) -> Path:
        return graph_file

    def release(self, prepared: Path) -> None:
        pass

    def observe(self, folder: Path) -> CommandOutput:
        return run_command(self.command, self.cwd, "--check")

    def difference(self, reference: object, observed: object) -> str | None:
        assert isinstance(reference, CommandOutput) and isinstance(observed, CommandOutput)
        if reference == observed:
            return None
        parts = []
        if observed.returncode != reference.returncode:
            parts.append(f"exit {observed.returncode} (failure-free: {reference.returncode})")
        if observed.stdout != reference.stdout:
            parts.append(f"output differs at {_first_difference(reference.stdout, observed.stdout)}")
        return "--check: " + "; ".join(parts)


class SinkComparison:
    """``--compare-sinks``: what reached each writer input, as the writer's kind makes it its result."""

    def __init__(self, graph_file: Path, taps: list[Tap]) -> None:
        """Raises :class:`~snapgraph.chaos.recorder.RecorderError` for a graph that cannot be taped: one
        without a writer."""
        if not taps:
            raise RecorderError(f"{graph_file}: --compare-sinks: the graph has no writer with a connected input "
                                "(docs/guarantees.md, which operators are writers); compare with --check CMD")
        self.taps = taps
        self.description = "what reached the writers (" + ", ".join(
            f"{tap.label} {tap.kind.value if tap.kind else 'writer'}" for tap in taps) + ")"

    def prepare(self, graph_file: Path, folder: Path) -> Path:
        return taped_copy(graph_file, self.taps, folder)

    def release(self, prepared: Path) -> None:
        prepared.unlink(missing_ok=True)

    def observe(self, folder: Path) -> dict[str, tuple[str, ...]]:
        return {tap.label: effect(read_recording(folder / "records" / tap.name), tap.kind) for tap in self.taps}

    def difference(self, reference: object, observed: object) -> str | None:
        assert isinstance(reference, Mapping) and isinstance(observed, Mapping)
        parts = []
        for tap in self.taps:
            want, have = reference[tap.label], observed[tap.label]
            if want != have:
                kind = tap.kind.value if tap.kind else "writer"
                parts.append(f"writer {tap.label} ({kind}): {describe_difference(want, have)}")
        return "; ".join(parts) or None
