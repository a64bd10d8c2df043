"""Imported by the fork server only, before it forks any group process (its preload).

The fork server and every group process forked from it ignore SIGTERM (the
fork server already ignores SIGINT, and group processes ignore it too): a
signal sent to the engine's whole process group must reach only the engine,
which stops the graph gracefully (:mod:`snapgraph.runtime.signals`). The
engine ends its group processes itself, by their control pipes or SIGKILL.
"""

import signal

signal.signal(signal.SIGTERM, signal.SIG_IGN)

import snapgraph.runtime.processes  # noqa: E402,F401 - what the fork server preloads for its children
