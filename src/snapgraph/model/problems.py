"""Problems found while loading or validating a graph.

Loaders and the validator collect every problem instead of stopping at the
first, so ``snapgraph validate`` can report them all in one go.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a graph, with where it is (file, process, port, line)."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class GraphError(Exception):
    """Raised when a graph cannot be loaded or run; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
