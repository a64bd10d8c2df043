"""The processes of an engine run, read from ``/proc`` (Linux): its group processes, and what it left behind.

Every engine run of chaos starts in a session of its own (``start_new_session``), so the session id is the
engine's pid and every process it forks (the fork server, the group processes) shares it. A process of a
finished engine's session, or one whose command line or working directory names the run's folder, is a
process left behind.
"""

from __future__ import annotations

import os
from pathlib import Path


def _stat(pid: str) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name: state, ppid, pgrp, session, …"""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _command_line(pid: int | str) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None


def children(pid: int) -> list[int]:
    """The live (not zombie) child processes of ``pid``."""
    found = []
    for candidate in filter(str.isdigit, os.listdir("/proc")):
        stat = _stat(candidate)
        if stat is not None and stat[1] == str(pid) and stat[0] != "Z":
            found.append(int(candidate))
    return sorted(found)


def group_processes(engine_pid: int) -> list[int]:
    """The group processes of an engine: the children of its fork server (or groups started directly)."""
    found = []
    for child in children(engine_pid):
        command = _command_line(child) or b""
        if b"forkserver" in command:
            found += children(child)
        elif b"snapgraph-group" in command:
            found.append(child)
    return sorted(found)


def left_behind(sessions: set[int], folder: Path) -> list[tuple[int, str]]:
    """Live processes of ``sessions``, or whose command line or working directory names ``folder`` (this
    process aside): pid and the start of the command line."""
    found = []
    me = os.getpid()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == me:
            continue
        stat = _stat(pid)
        command = _command_line(pid)
        if stat is None or stat[0] == "Z" or command is None:
            continue
        text = command.replace(b"\0", b" ").decode(errors="replace")
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            cwd = ""
        if int(stat[3]) in sessions or str(folder) in text or cwd == str(folder):
            found.append((int(pid), text.strip()[:160]))
    return found
