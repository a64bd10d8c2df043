"""Options of one graph run that every part of the runtime reads."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from snapgraph.runtime.channels import DEFAULT_CAPACITY


@dataclass
class RunOptions:
    stop_after: float | None = None
    channel_capacity: int = DEFAULT_CAPACITY
    operator_dirs: list[Path] = field(default_factory=list)
    stdout: TextIO | None = None  # Terminal/Wiretap output; None = sys.stdout at write time
    log_level: int = logging.INFO
    drain_timeout: float = 60.0  # seconds a draining graph gets to reach its final epoch
    in_process: bool = False  # run every group in this process (debugging) instead of one process per group
    # Groups send their operators' log lines and their processes' script output to the driver as control
    # messages instead of writing to the terminal (a live display or JSON logs owns the terminal).
    forward_output: bool = False
    pin_cpus: bool = True  # keep the threads of a group of several operators on one CPU (group.pin_thread)
