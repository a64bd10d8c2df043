"""Files published exactly once: written under a temporary name, renamed into place later.

A :class:`PartStager` belongs to one writer (its ``tag``). :meth:`PartStager.stage` writes a file's
bytes to ``.<name>.<tag>.<seq>.sg-tmp`` beside its final path and flushes them to disk; ``seq`` is the
stager's counter, which the writer keeps in its snapshot state. :meth:`PartStager.publish_through`
renames the files staged in epochs up to one into place; :meth:`PartStager.recover` does what a restore
needs from the temporary files alone: those staged before the restored state (``seq`` below its
counter) belong to completed epochs and are published, the others are deleted.

Publishing never overwrites a file: it hard-links the temporary file to the final name, which fails if
that name exists, and then removes the temporary name. A final name that exists and is not the same file
as the temporary one was not written by this stager: the publish fails, naming it, and leaves both
alone. The same file under both names is a publish interrupted between link and removal: finishing it is
the removal. No temporary file and the final file present is a publish done before: nothing to do.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from snapgraph.connectors.base import Checkpoint
from snapgraph.connectors.files.local import sync_folder

TEMP_SUFFIX = ".sg-tmp"
_TEMP_NAME = re.compile(r"^\.(?P<final>.+)\.(?P<tag>[A-Za-z0-9_-]+)\.(?P<seq>\d{8})" + re.escape(TEMP_SUFFIX) + "$")


class PartClashError(RuntimeError):
    """A final name is taken by a file this writer did not write: names it."""


@dataclass(frozen=True)
class StagedPart:
    seq: int
    final: Path

    def temp(self, tag: str) -> Path:
        return self.final.with_name(f".{self.final.name}.{tag}.{self.seq:08d}{TEMP_SUFFIX}")


def writer_tag(graph: str, operator: str) -> str:
    """A writer's tag in temporary names: its graph and operator name, other characters as ``_``."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"{graph}-{operator}")


class PartStager:
    """One writer's staged files (see the module docstring); ``operator`` names it in errors."""

    def __init__(self, operator: str, tag: str, checkpoint: Checkpoint) -> None:
        self.operator = operator
        self.tag = tag
        self.checkpoint = checkpoint
        self.next_seq = 0
        self.staged: dict[str, list[StagedPart]] = {}  # epoch -> parts staged in its serialize

    def stage(self, final: Path, data: bytes, epoch: str) -> StagedPart:
        """Write ``data`` under ``final``'s temporary name, durably, as a part of ``epoch``."""
        part = StagedPart(self.next_seq, final)
        temp = part.temp(self.tag)
        with temp.open("wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        sync_folder(final.parent)
        self.next_seq += 1
        self.staged.setdefault(epoch, []).append(part)
        self.checkpoint("file_writer_staged")
        return part

    def publish_through(self, epoch: str) -> list[StagedPart]:
        """Publish the parts staged in epochs up to ``epoch``, oldest first; returns them."""
        done: list[StagedPart] = []
        for staged_epoch in sorted(e for e in self.staged if e <= epoch):
            for part in self.staged.pop(staged_epoch):
                self.publish(part)
                done.append(part)
        return done

    def publish(self, part: StagedPart) -> None:
        """Rename one part into place, never over a file that is not its own (see the module docstring)."""
        temp = part.temp(self.tag)
        if not temp.exists():
            if part.final.exists():
                return  # published before
            raise FileNotFoundError(f"operator {self.operator!r}: the staged part {str(temp)!r} of "
                                    f"{str(part.final)!r} is gone")
        try:
            os.link(temp, part.final)
        except FileExistsError:
            if not os.path.samefile(temp, part.final):
                raise PartClashError(
                    f"operator {self.operator!r}: refusing to overwrite {str(part.final)!r}: the file exists and "
                    f"was not written by this writer (its part is kept as {str(temp)!r})") from None
        self.checkpoint("file_writer_linked")
        temp.unlink()
        sync_folder(part.final.parent)
        self.checkpoint("file_writer_published")

    def temp_parts(self, folders: Iterable[Path]) -> list[StagedPart]:
        """This stager's temporary files in ``folders``, by ``seq``."""
        parts = []
        for folder in folders:
            if not folder.is_dir():
                continue
            for entry in folder.iterdir():
                match = _TEMP_NAME.match(entry.name)
                if match and match["tag"] == self.tag:
                    parts.append(StagedPart(int(match["seq"]), folder / match["final"]))
        return sorted(parts, key=lambda part: part.seq)

    def recover(self, folders: Iterable[Path], next_seq: int) -> list[StagedPart]:
        """After a restore to a state whose counter is ``next_seq``: publish the parts staged before it
        (completed epochs), delete the others (epochs after the restored one); returns those published."""
        self.next_seq = next_seq
        self.staged.clear()
        published = []
        for part in self.temp_parts(folders):
            if part.seq < next_seq:
                self.publish(part)
                published.append(part)
            else:
                part.temp(self.tag).unlink()
        return published

    def discard(self, folders: Iterable[Path]) -> None:
        """A new run: delete every temporary file of this stager (an earlier run's, never published)."""
        self.staged.clear()
        for part in self.temp_parts(folders):
            part.temp(self.tag).unlink()


__all__ = ["TEMP_SUFFIX", "PartClashError", "PartStager", "StagedPart", "writer_tag"]
