"""The transport conformance suite on the process transport (OS processes, pipes)."""

from __future__ import annotations

import os
import signal

from transport_contract import TransportContract, contract_covers

from snapgraph.runtime.processes import _ProcessHandle
from snapgraph.runtime.transport import GroupHandle


class TestProcessTransport(TransportContract):
    backend = "process"

    def kill(self, handle: GroupHandle) -> None:
        assert isinstance(handle, _ProcessHandle)
        pid = handle._process.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)


def test_the_process_backend_is_a_transport() -> None:
    contract_covers("process")
