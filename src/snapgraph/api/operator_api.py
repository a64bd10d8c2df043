"""The ``api`` object injected into every Gen2 Python3 operator script.

Names and signatures follow ``com.sap.system.python3Operator.v2`` exactly so
scripts run unchanged. The object only records registrations and checks
arguments; everything that moves data goes through an :class:`OperatorHost`
that the runtime implements, so this package knows nothing of threads,
channels or processes.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from snapgraph.api.conformance import conforms
from snapgraph.api.header import normalize_header
from snapgraph.api.streams import BinaryWriter, InputBody, TableWriter, is_binary_type
from snapgraph.api.table import Record, Table
from snapgraph.api.type_context import TypeContext
from snapgraph.model.types import DYNAMIC, TABLE, DataTypeReference, PortType
from snapgraph.model.validate import GEN1_ATTRIBUTES, TIMER_WITH_PERIOD, multi_port_callback

ResponseCallback = Callable[[bytes, "BaseException | None"], Any]


class OperatorException(Exception):
    """``api.OperatorException(code, text, details)``: an error with a code for the error port."""

    def __init__(self, code: int = 0, text: str = "", details: Table | None = None) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        self.details = details


@dataclass
class OutportInfo:
    """``api.OutportInfo(is_generator=False)``: per-output-port snapshot information."""

    is_generator: bool = False


@dataclass
class InitialProcessInfo:
    """``api.InitialProcessInfo(is_stateful=False, outports_info={})``."""

    is_stateful: bool = False
    outports_info: dict[str, OutportInfo] = field(default_factory=dict)


# The name ``InitialProcessInfo`` inside ``class Api`` is the class attribute scripts use
# (``api.InitialProcessInfo``), not a type: annotations there use this alias.
_InitialProcessInfo = InitialProcessInfo


class OperatorHost(Protocol):
    """What the runtime provides to one operator's ``api`` object."""

    def check_output_window(self, what: str) -> None:
        """Raise if publishing is not allowed right now (e.g. at script top level)."""

    def emit(self, port: str, body: Any, header: dict[str, Any], type_id: str,
             response_callback: ResponseCallback | None) -> bytes:
        """Send one message on ``port`` to every connected receiver; returns its id."""

    def open_stream(self, port: str, header: dict[str, Any], type_id: str,
                    response_callback: ResponseCallback | None) -> tuple[bytes, list[Any]]:
        """Send a stream message; returns its id and one chunk sink per receiver."""

    def propagate_exception(self, exc: BaseException) -> None:
        """Hand an exception from a script thread to the dispatcher's error handling."""


@dataclass
class Registrations:
    """Everything a script registered; the runtime reads this after the script body ran."""

    port_callbacks: dict[str, Callable[..., Any]] = field(default_factory=dict)
    prestart: Callable[[], Any] | None = None
    timers: list[Callable[[], Any]] = field(default_factory=list)
    shutdown: Callable[[], Any] | None = None
    response_callbacks: dict[str, ResponseCallback] = field(default_factory=dict)
    # The 4th argument of the legacy set_port_callback form, while that port callback runs.
    active_response_callback: ResponseCallback | None = None
    snapshot_info: InitialProcessInfo | None = None
    serialize: Callable[[str], bytes] | None = None
    restore: Callable[[str, bytes], Any] | None = None
    epoch_complete: Callable[[str], Any] | None = None
    pause: Callable[[], Any] | None = None
    resume: Callable[[], Any] | None = None


class Config:
    """``api.config``: attribute access to the operator's configuration properties."""

    def __init__(self, values: dict[str, Any], process: str) -> None:
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "_process", process)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            known = ", ".join(sorted(self._values)) or "none"
            raise AttributeError(
                f"operator {self._process!r} has no configuration property {name!r} (it has: {known})"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self._values[name] = value

    def __contains__(self, name: str) -> bool:
        return name in self._values

    def __dir__(self) -> list[str]:
        return sorted(self._values)

    def __repr__(self) -> str:
        return f"Config({self._values!r})"


class Outport:
    """``api.outputs.<port>``: publishing on one output port."""

    def __init__(self, name: str, port_type: PortType, host: OperatorHost, registrations: Registrations,
                 process: str, type_context: TypeContext) -> None:
        self._name = name
        self._type_context = type_context
        self._port_type = port_type
        self._host = host
        self._registrations = registrations
        self._process = process
        self._dynamic_type: DataTypeReference | None = None
        self._inferred_types: dict[tuple[type, ...], DataTypeReference] = {}

    @property
    def type_ref(self) -> DataTypeReference:
        """The port's declared type (or the dynamic type set on it)."""
        if self._dynamic_type is not None:
            return self._dynamic_type
        return DataTypeReference(self._port_type.category, self._port_type.vtype_id)

    def set_dynamic_type(self, dynamic_type: DataTypeReference) -> None:
        """Tie a type to a dynamic (``*``) port; statically typed ports refuse."""
        if not self._port_type.is_dynamic:
            raise TypeError(
                f"operator {self._process!r}: output port {self._name!r} has the static type "
                f"{self._port_type}; set_dynamic_type needs a dynamic ('*') port"
            )
        self._dynamic_type = dynamic_type

    def publish(self, data: Any, *args: Any, **kwargs: Any) -> bytes:
        """``publish(data, header=None, response_callback=None)`` (``data`` None: headers only) or
        ``publish(fileobj, n, header=None, response_callback=None)``; returns the 12-byte id."""
        if isinstance(data, (io.IOBase,)) or (hasattr(data, "read") and not isinstance(data, Table)):
            n = args[0] if args else kwargs.pop("n", -1)
            header, response_callback = self._header_and_callback(args[1:], kwargs)
            body: Any = data.read() if n is None or n < 0 else data.read(n)
            if isinstance(body, str):
                body = body.encode()
        else:
            header, response_callback = self._header_and_callback(args, kwargs)
            body = data
        self._host.check_output_window(f"api.outputs.{self._name}.publish()")
        if isinstance(body, InputBody):
            raise TypeError(
                f"operator {self._process!r}: a received body cannot be published directly on port "
                f"{self._name!r}; publish its value instead: body.get()"
            )
        # publish(None, header): a header-only message, which every port type carries.
        problem = None if body is None else conforms(body, self._effective_type(), self._type_context)
        if problem:
            raise TypeError(f"operator {self._process!r}: cannot publish on port {self._name!r}: {problem}")
        if self._port_type.category == TABLE and body is not None:
            body = self._typed_table(body)
        return self._host.emit(self._name, body, header, self._outgoing_type_id(body), response_callback)

    def with_writer(self, header: Any = None, response_callback: ResponseCallback | None = None
                    ) -> tuple[bytes, TableWriter | BinaryWriter]:
        """Open a stream to the receivers; returns ``(msg_id, writer)``. Close the writer."""
        self._host.check_output_window(f"api.outputs.{self._name}.with_writer()")
        if self._port_type.is_dynamic and self._port_type.category != "any" and self._dynamic_type is None:
            raise TypeError(
                f"operator {self._process!r}: call api.outputs.{self._name}.set_dynamic_type(...) "
                f"before with_writer() on the dynamic port {self._name!r}"
            )
        type_id = self.type_ref.type_id
        is_table = self._port_type.category in (TABLE, "any") and not is_binary_type(self._port_type, type_id)
        if not is_table and not is_binary_type(self._port_type, type_id):
            raise TypeError(
                f"operator {self._process!r}: with_writer() needs a table or binary port; "
                f"{self._name!r} is {self._port_type}"
            )
        msg_id, sinks = self._host.open_stream(
            self._name, normalize_header(header), type_id,
            response_callback or self._registrations.active_response_callback
            or self._registrations.response_callbacks.get(self._name),
        )
        return msg_id, (TableWriter(sinks) if is_table else BinaryWriter(sinks))

    def _header_and_callback(self, args: tuple[Any, ...], kwargs: dict[str, Any]
                             ) -> tuple[dict[str, Any], ResponseCallback | None]:
        header = args[0] if args else kwargs.pop("header", None)
        callback = args[1] if len(args) > 1 else kwargs.pop("response_callback", None)
        if kwargs:
            raise TypeError(f"publish() got unexpected keyword arguments: {', '.join(kwargs)}")
        return normalize_header(header), (callback or self._registrations.active_response_callback
                                          or self._registrations.response_callbacks.get(self._name))

    def _typed_table(self, rows: Table | list[Any]) -> Table:
        """The table to send, typed: as published, else with the port's type (the one set on a
        dynamic port), else with a dynamic type inferred from its first row, as Gen2 does. An
        untyped ``api.Table`` is typed in place, since messages pass by reference within a group."""
        table = rows if isinstance(rows, Table) else Table(rows)
        if table.type_ref is None:
            declared = self.type_ref.type_id
            table.type_ref = (DataTypeReference(TABLE, declared) if declared != DYNAMIC
                              else self._inferred_type(table.body))
        return table

    def _inferred_type(self, rows: list[Any]) -> DataTypeReference:
        """The dynamic type of untyped rows on this ``*`` port: columns ``col0..`` typed after the
        first row's values (an empty table has no columns). Tables whose first rows hold values of
        the same Python types share one type, so publishing many tables creates one type."""
        first_row = rows[0] if rows else ()
        value_types = tuple(map(type, first_row))
        known = self._inferred_types.get(value_types)
        if known is None:
            try:
                known = self._type_context.infer_table_type(first_row)
            except TypeError as exc:
                raise TypeError(f"operator {self._process!r}: cannot publish on port {self._name!r}: the table "
                                f"has no type and none can be inferred from its first row: {exc}") from None
            self._inferred_types[value_types] = known
        return known

    def _effective_type(self) -> PortType:
        if self._dynamic_type is not None:
            return PortType(self._dynamic_type.type_, self._dynamic_type.type_id)
        return self._port_type

    def _outgoing_type_id(self, body: Any) -> str:
        if self._dynamic_type is not None:
            return self._dynamic_type.type_id
        if not self._port_type.is_dynamic:
            return self._port_type.vtype_id
        if isinstance(body, Table) and body.type_ref is not None:
            return body.type_ref.type_id
        return DYNAMIC

    def __repr__(self) -> str:
        return f"<output port {self._name!r} ({self._port_type})>"


class Outputs:
    """``api.outputs``: one attribute per output port."""

    def __init__(self, ports: dict[str, Outport], process: str) -> None:
        self.__dict__.update(ports)
        object.__setattr__(self, "_process", process)

    def __getattr__(self, name: str) -> Outport:
        ports = ", ".join(k for k in self.__dict__ if not k.startswith("_")) or "none"
        raise AttributeError(f"operator {self._process!r} has no output port {name!r} (its ports: {ports})")

    def __iter__(self):  # type: ignore[no-untyped-def]
        return (v for k, v in self.__dict__.items() if not k.startswith("_"))


@dataclass
class RuntimeInfo:
    """Run-time facts exposed as ``api.graph_name`` etc."""

    graph_name: str
    graph_handle: str
    group_id: str
    repo_root: str
    subengine_root: str
    multiplicity: int = 1
    multiplicity_index: int = 0


class Api:
    """The Gen2 ``api`` object of one operator."""

    Table = Table
    Record = Record
    DataTypeReference = DataTypeReference
    OperatorException = OperatorException
    InitialProcessInfo = InitialProcessInfo
    InitProcessInfo = InitialProcessInfo  # the spelling used in parts of SAP's docs
    OutportInfo = OutportInfo

    def __init__(self, *, process: str, config: dict[str, Any], inports: dict[str, PortType],
                 outports: dict[str, PortType], connected_in: set[str], connected_out: set[str],
                 host: OperatorHost, type_context: TypeContext, logger: logging.Logger,
                 info: RuntimeInfo) -> None:
        self._process = process
        self._host = host
        self._inports = inports
        self._registrations = Registrations()
        self._loading = True
        self.config = Config(config, process)
        self.logger = logger
        self.type_context = type_context
        self.outputs = Outputs(
            {name: Outport(name, t, host, self._registrations, process, type_context)
             for name, t in outports.items()},
            process,
        )
        self.is_inport_connected = {name: name in connected_in for name in inports}
        self.is_outport_connected = {name: name in connected_out for name in outports}
        self.graph_name = info.graph_name
        self.graph_handle = info.graph_handle
        self.group_id = info.group_id
        self.multiplicity = info.multiplicity
        self.multiplicity_index = info.multiplicity_index
        self.repo_root = info.repo_root
        self.subengine_root = info.subengine_root

    # -- introspection ------------------------------------------------------
    @property
    def registrations(self) -> Registrations:
        return self._registrations

    def finish_loading(self) -> None:
        """Called by the runtime after the script body ran: registration-only calls close."""
        self._loading = False

    def get_inport_names(self) -> list[str]:
        return list(self._inports)

    def get_outport_names(self) -> list[str]:
        return list(self.is_outport_connected)

    # -- registration ---------------------------------------------------------
    def set_port_callback(self, port: str, callback: Callable[..., Any], *legacy: Any) -> None:
        """Call ``callback(msg_id, header, body)`` for each message arriving on input ``port``."""
        if isinstance(port, (list, tuple)):
            raise TypeError(f"operator {self._process!r}: {multi_port_callback(list(port))}")
        if port not in self._inports:
            known = ", ".join(self._inports) or "none"
            raise ValueError(f"operator {self._process!r} has no input port {port!r} (its ports: {known})")
        self._check_callable(callback, "set_port_callback")
        if len(legacy) > 1 and legacy[1] is not None:
            callback = self._answering_with(callback, legacy[1])
        self._registrations.port_callbacks[port] = callback

    def _answering_with(self, callback: Callable[..., Any], response_callback: ResponseCallback) -> Callable[..., Any]:
        """``callback`` with ``response_callback`` as the default for everything it publishes."""
        registrations = self._registrations

        def port_callback(msg_id: bytes, header: Any, body: Any) -> Any:
            previous = registrations.active_response_callback
            registrations.active_response_callback = response_callback
            try:
                return callback(msg_id, header, body)
            finally:
                registrations.active_response_callback = previous

        return port_callback

    def set_prestart(self, callback: Callable[[], Any]) -> None:
        self._check_callable(callback, "set_prestart")
        self._registrations.prestart = callback

    def add_timer(self, callback: Callable[[], Any], *rest: Any) -> None:
        """Add a timer; ``callback()`` returns seconds to its next call (0 = asap, < 0 = stop)."""
        if isinstance(callback, str):
            raise TypeError(f"operator {self._process!r}: {TIMER_WITH_PERIOD}")
        self._check_callable(callback, "add_timer")
        self._registrations.timers.append(callback)

    def set_shutdown(self, callback: Callable[[], Any]) -> None:
        self._check_callable(callback, "set_shutdown")
        self._registrations.shutdown = callback

    def set_response_callback(self, port: str, callback: ResponseCallback) -> None:
        """The default ``response_callback(msg_id, ex)`` for every publish on output ``port``."""
        if port not in self.is_outport_connected:
            raise ValueError(f"operator {self._process!r} has no output port {port!r}")
        self._check_callable(callback, "set_response_callback")
        self._registrations.response_callbacks[port] = callback

    def propagate_exception(self, exc: BaseException) -> None:
        """Apply this operator's error handling to ``exc`` raised on one of the script's threads."""
        self._host.propagate_exception(exc)

    # -- state management -------------------------------------------------------
    def set_initial_snapshot_info(self, info: _InitialProcessInfo) -> None:
        if not self._loading:
            raise RuntimeError(
                f"operator {self._process!r}: api.set_initial_snapshot_info must be called at script "
                "top level, not from a callback"
            )
        if not isinstance(info, InitialProcessInfo):
            raise TypeError("api.set_initial_snapshot_info expects api.InitialProcessInfo(...)")
        for port in info.outports_info:
            if port not in self.is_outport_connected:
                raise ValueError(f"operator {self._process!r}: outports_info names unknown output port {port!r}")
        self._registrations.snapshot_info = info

    def set_serialize_callback(self, callback: Callable[[str], bytes]) -> None:
        self._check_callable(callback, "set_serialize_callback")
        self._registrations.serialize = callback

    def set_restore_callback(self, callback: Callable[[str, bytes], Any]) -> None:
        self._check_callable(callback, "set_restore_callback")
        self._registrations.restore = callback

    def set_epoch_complete_callback(self, callback: Callable[[str], Any]) -> None:
        self._check_callable(callback, "set_epoch_complete_callback")
        self._registrations.epoch_complete = callback

    def set_pause_callback(self, callback: Callable[[], Any]) -> None:
        self._check_callable(callback, "set_pause_callback")
        self._registrations.pause = callback

    def set_resume_callback(self, callback: Callable[[], Any]) -> None:
        self._check_callable(callback, "set_resume_callback")
        self._registrations.resume = callback

    # -- application log ----------------------------------------------------------
    def app_log_error(self, message_code: str, message: str, details: str = "") -> None:
        self.logger.error(self._app_log_text(message_code, message, details))

    def app_log_info(self, message_code: str, message: str, details: str = "") -> None:
        self.logger.info(self._app_log_text(message_code, message, details))

    def app_log_warning(self, message_code: str, message: str, details: str = "") -> None:
        self.logger.warning(self._app_log_text(message_code, message, details))

    @staticmethod
    def _app_log_text(code: str, message: str, details: str) -> str:
        return f"[{code}] {message}" + (f" ({details})" if details else "")

    def _check_callable(self, callback: Any, what: str) -> None:
        if not callable(callback):
            raise TypeError(f"operator {self._process!r}: api.{what} expects a function, got {type(callback).__name__}")

    def __getattr__(self, name: str) -> Any:
        if name in GEN1_ATTRIBUTES:
            raise AttributeError(f"operator {self._process!r}: {GEN1_ATTRIBUTES[name]}")
        raise AttributeError(f"the Gen2 api object has no attribute {name!r}")


__all__ = [
    "Api", "Config", "InitialProcessInfo", "OperatorException", "OperatorHost", "OutportInfo",
    "Outport", "Outputs", "Registrations", "RuntimeInfo",
]
