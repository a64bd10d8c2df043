"""The web monitor: a read-only page of a running graph (``snapgraph run --ui-port``) or of the runs in
a store (``snapgraph ui``).

The HTTP layer is the standard library's :class:`~http.server.ThreadingHTTPServer` on a daemon thread:
the monitor serves one HTML page, two static files and a few small JSON documents to a handful of
browsers, which needs no framework, adds no dependency and no event loop to the engine process, and
never touches signal handlers (the engine's own, :mod:`snapgraph.runtime.signals`, stay in charge of
SIGINT/SIGTERM). Everything is served from this package (``monitor/static``): no CDN, nothing fetched
at run time. Only GET is answered; nothing a browser sends can change a run.

Routes: ``/`` the page; ``/static/app.js`` and ``/static/app.css``; ``/api/runs`` the run list
(``mode`` says ``live`` or ``store``); ``/api/run[?run=ID]`` one run (live: the
:meth:`RunView.as_dict` of the watched run; store: the same shape from the store's records);
``/api/layout[?run=ID]`` the graph's picture (:func:`snapgraph.monitor.layout.layout`).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from snapgraph.model.graph import Graph
from snapgraph.model.loader import LoadOptions, load_graph
from snapgraph.model.problems import GraphError
from snapgraph.monitor.layout import layout
from snapgraph.monitor.live import RunWatcher
from snapgraph.snapshot.store import RunRecord, SnapshotStore, StoreError, open_store

DEFAULT_HOST = "127.0.0.1"
STATIC_FILES = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
PAGE = "index.html"
_log = logging.getLogger(__name__)


class MonitorError(Exception):
    """The monitor cannot be served (the address is taken, the host unknown, ...)."""


class Source(Protocol):
    """What the page shows: the run list, one run, the picture of a run's graph (None: not found)."""

    mode: str

    def runs(self) -> list[dict[str, Any]]: ...

    def run(self, run_id: str | None) -> dict[str, Any] | None: ...

    def layout(self, run_id: str | None) -> dict[str, Any] | None: ...


def _run_row(store: SnapshotStore, run: RunRecord) -> dict[str, Any]:
    epochs = store.epochs(run.run_id)
    return {"run": run.run_id, "graph": run.graph_name, "graph_key": run.graph_key,
            "status": store.shown_status(run), "attempts": run.attempts, "epochs": len(epochs),
            "newest_epoch": epochs[-1].epoch if epochs else None, "created": run.created, "updated": run.updated}


class StoreSource:
    """The runs of a snapshot store. A store is opened read-only per request (the server's threads never
    share a connection), so a running engine writing the same store is not disturbed."""

    mode = "store"

    def __init__(self, location: str | Path) -> None:
        self.location = location
        self._graphs: dict[str, Graph | None] = {}
        self._lock = threading.Lock()

    def _with_store(self, read: Callable[[SnapshotStore], Any]) -> Any:
        store = open_store(self.location, create=False, read_only=True)
        try:
            return read(store)
        finally:
            store.close()

    def runs(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._with_store(
            lambda store: [_run_row(store, run) for run in store.runs()])
        return sorted(rows, key=lambda row: row["created"], reverse=True)

    def run(self, run_id: str | None) -> dict[str, Any] | None:
        def read(store: SnapshotStore) -> dict[str, Any] | None:
            record = next((r for r in store.runs() if r.run_id == run_id), None)
            if record is None:
                return None
            epochs = store.epochs(record.run_id)
            last = epochs[-1] if epochs else None
            return {
                "graph": record.graph_name, "run": record.run_id, "status": store.shown_status(record),
                "at": record.updated, "elapsed": record.updated - record.created, "attempt": record.attempts,
                "recoveries": max(0, record.attempts - 1), "completed_epochs": len(epochs),
                "last_completed_epoch": last.epoch if last else None,
                "last_epoch_seconds": last.duration if last else None,
                "last_epoch_bytes": last.total_bytes if last else None,
                "operators": [], "attempts": [], "failures": [],
                "epochs": [{"epoch": e.epoch, "attempt": None, "status": "completed", "started_at": e.started,
                            "seconds": e.duration, "state_bytes": e.total_bytes, "acks": None,
                            "stateful": len(e.operator_bytes), "final": False, "sealed": False,
                            "operators": {name: {"alignment_seconds": None, "serialize_seconds": None,
                                                 "persist_seconds": None, "state_bytes": size}
                                          for name, size in sorted(e.operator_bytes.items())}}
                           for e in epochs]}

        found: dict[str, Any] | None = self._with_store(read)
        return found

    def layout(self, run_id: str | None) -> dict[str, Any] | None:
        """The picture of the run's graph, when its file (the run's graph key) can still be loaded."""
        key = self._with_store(lambda store: next((r.graph_key for r in store.runs() if r.run_id == run_id), None))
        if key is None:
            return None
        with self._lock:
            if key not in self._graphs:
                self._graphs[key] = _load_quietly(Path(key))
            graph = self._graphs[key]
        return layout(graph).as_dict() if graph is not None else None


def _load_quietly(path: Path) -> Graph | None:
    """A past run's graph file, if it still loads as it is (parameters at their defaults); else no picture."""
    try:
        return load_graph(path, LoadOptions())
    except (GraphError, OSError, ValueError) as err:
        _log.info("no picture of %s: %s", path, err)
        return None


class LiveSource:
    """The run a :class:`RunWatcher` watches in this process (and, with a store, that store's other runs)."""

    mode = "live"

    def __init__(self, watcher: RunWatcher, store_location: str | Path | None = None) -> None:
        self.watcher = watcher
        self.store = StoreSource(store_location) if store_location is not None else None
        self._layout = layout(watcher.graph).as_dict()

    def runs(self) -> list[dict[str, Any]]:
        view = self.watcher.view()
        live = {"run": view.run, "graph": view.graph, "graph_key": str(self.watcher.graph.path),
                "status": view.status, "attempts": view.attempt, "epochs": view.completed_epochs,
                "newest_epoch": view.last_completed_epoch, "created": view.at - view.elapsed, "updated": view.at,
                "live": True}
        others: list[dict[str, Any]] = []
        if self.store is not None:
            try:
                others = [row for row in self.store.runs() if row["run"] != view.run]
            except StoreError as err:  # the store may not exist before the first epoch
                _log.info("no store runs: %s", err)
        return [live, *others]

    def run(self, run_id: str | None) -> dict[str, Any] | None:
        if run_id is None or run_id == self.watcher.view().run:
            return self.watcher.view().as_dict()
        return self.store.run(run_id) if self.store is not None else None

    def layout(self, run_id: str | None) -> dict[str, Any] | None:
        if run_id is None or run_id == self.watcher.view().run:
            return self._layout
        return self.store.layout(run_id) if self.store is not None else None


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        run_id = parse_qs(url.query).get("run", [None])[0]
        source = self.server.source
        try:
            if url.path == "/":
                self._send(HTTPStatus.OK, "text/html; charset=utf-8", _asset(PAGE))
            elif url.path.startswith("/static/") and url.path[len("/static/"):] in STATIC_FILES:
                name = url.path[len("/static/"):]
                self._send(HTTPStatus.OK, STATIC_FILES[name], _asset(name))
            elif url.path == "/api/runs":
                self._json({"mode": source.mode, "runs": source.runs()})
            elif url.path == "/api/run":
                self._json(source.run(run_id))
            elif url.path == "/api/layout":
                self._json(source.layout(run_id))
            else:
                self._json({"error": f"no such page: {url.path}"}, HTTPStatus.NOT_FOUND)
        except StoreError as err:
            self._json({"error": str(err)}, HTTPStatus.SERVICE_UNAVAILABLE)

    def _json(self, data: dict[str, Any] | None, status: HTTPStatus = HTTPStatus.OK) -> None:
        if data is None:
            data, status = {"error": "no such run"}, HTTPStatus.NOT_FOUND
        self._send(status, "application/json", json.dumps(data, default=str).encode())

    def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", "default-src 'self'")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Requests go to the debug log, never to standard error (the engine's output stays readable)."""
        _log.debug("%s " + format, self.address_string(), *args)


def _asset(name: str) -> bytes:
    return (resources.files("snapgraph.monitor") / "static" / name).read_bytes()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    source: Source


class MonitorServer:
    """Serves ``source`` at ``host:port`` (port 0: a free one, see :attr:`url`) on a daemon thread."""

    def __init__(self, source: Source, host: str = DEFAULT_HOST, port: int = 0) -> None:
        try:
            self._server = _Server((host, port), _Handler)
        except OSError as err:
            raise MonitorError(f"cannot serve the web monitor on {host}:{port}: {err.strerror or err}") from None
        self._server.source = source
        self._thread = threading.Thread(target=self._server.serve_forever, name="snapgraph-web-monitor", daemon=True)

    @property
    def url(self) -> str:
        address, port = self._server.server_address[:2]
        host = address.decode() if isinstance(address, bytes) else address
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"

    def start(self) -> MonitorServer:
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()


__all__ = ["DEFAULT_HOST", "LiveSource", "MonitorError", "MonitorServer", "StoreSource"]
