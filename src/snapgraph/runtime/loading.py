"""Loading one operator: its script body (or a built-in's registrations), then the checks of what it registered.

Compiling and running a script as a module of its own is :mod:`snapgraph.runtime.scripts`; what a
built-in registers is :mod:`snapgraph.runtime.builtins`.
"""

from __future__ import annotations

from snapgraph.api.operator_api import Api, Registrations
from snapgraph.model.graph import Process
from snapgraph.runtime import script_guards
from snapgraph.runtime.builtins import setup_builtin
from snapgraph.runtime.failures import InvalidOperator
from snapgraph.runtime.host import BuiltinHost
from snapgraph.runtime.scripts import run_script


def load_operator(process: Process, api: Api, host: BuiltinHost, *, snapshots_on: bool) -> None:
    """Run ``process``'s script body with ``api`` (a built-in: register its callbacks), close registration,
    and check that a stateful operator can take part in snapshots (raises :class:`InvalidOperator`)."""
    if process.script is not None:
        try:
            run_script(process.script, process.name, {"api": api})
        finally:
            script_guards.leave_if_forked()
    else:
        setup_builtin(process, api, host)
    api.finish_loading()
    registrations = api.registrations
    if snapshots_on and is_stateful(registrations) and (
            registrations.serialize is None or registrations.restore is None):
        raise InvalidOperator(
            f"operator {process.name!r} is declared stateful (api.set_initial_snapshot_info) but does not "
            "register both api.set_serialize_callback and api.set_restore_callback"
        )


def is_stateful(registrations: Registrations) -> bool:
    """Whether the script declared state (``api.set_initial_snapshot_info(is_stateful=True)``)."""
    info = registrations.snapshot_info
    return bool(info and info.is_stateful)
