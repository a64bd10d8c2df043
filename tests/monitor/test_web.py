"""The web monitor in a real browser (Debian's chromium driven by Playwright) on real runs of a real graph.

Chromium is part of the test environment (.ci/run installs it): without it these tests fail, they never skip.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from conftest import ROW_COUNTING_SINK, no_process_left, snapgraph_cli, write_files
from snapgraph.snapshot.faults import ENV_VAR

GRAPH = """
name: watched
operators:
  gen:
    script: gen.py
    outputs: {out: table}
    group: left
  double:
    script: double.py
    inputs: {in: table}
    outputs: {out: table}
    group: left
  sink:
    script: sink.py
    inputs: {in: table}
    group: right
connections:
  - gen.out -> double.in
  - double.out -> sink.in
"""

GEN = """
import pickle
offset = 0
api.set_initial_snapshot_info(api.InitialProcessInfo(
    is_stateful=True, outports_info={'out': api.OutportInfo(is_generator=True)}))

def tick():
    global offset
    api.outputs.out.publish(api.Table([[offset, i] for i in range(4)]))
    offset += 1
    return 0.05

def restore(epoch, data):
    global offset
    offset = pickle.loads(data)

api.add_timer(tick)
api.set_serialize_callback(lambda epoch: pickle.dumps(offset))
api.set_restore_callback(restore)
"""

DOUBLE = """
api.set_initial_snapshot_info(api.InitialProcessInfo(is_stateful=False))
api.set_port_callback("in", lambda msg_id, header, body: api.outputs.out.publish(body.get()))
"""

SINK = ROW_COUNTING_SINK  # a stateful sink that counts the rows it received

WAIT_MS = 30_000  # generous bound on waits for what the run must show; never a measured duration


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("the web monitor tests need Debian's chromium: apt-get install -y chromium (see .ci/run)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_files(tmp_path, {"graph.yaml": GRAPH, "gen.py": GEN, "double.py": DOUBLE, "sink.py": SINK})
    return tmp_path


def start(folder: Path, *args: str, faults: str | None = None) -> tuple[subprocess.Popen[bytes], str, Path]:
    """Start ``snapgraph ARGS`` and wait for the monitor's address on its standard error."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop(ENV_VAR, None)
    if faults:
        env[ENV_VAR] = faults
    log = folder / f"stderr-{args[0]}.txt"
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "snapgraph", *args], cwd=folder, stdout=subprocess.DEVNULL,
                                stderr=err, env=env)
    deadline = time.monotonic() + 30
    while not (found := re.search(r"snapgraph: monitor at (http://\S+)", log.read_text())):
        assert proc.poll() is None, f"snapgraph {' '.join(args)} ended: {log.read_text()}"
        assert time.monotonic() < deadline, f"no monitor address: {log.read_text()}"
        time.sleep(0.05)
    return proc, found.group(1), log


def first_render_ms(page: Page) -> float:
    page.wait_for_selector("body[data-rendered]", timeout=WAIT_MS)
    return float(page.evaluate("monitor.firstRender"))


def cell(page: Page, operator: str, column: int) -> int:
    text = page.locator(f"#operators tr[data-operator={operator}] td").nth(column).inner_text()
    return int(text.replace(",", ""))


def test_the_monitor_of_a_running_graph_shows_its_picture_counters_checkpoints_and_recovery(
        folder: Path, browser: Browser) -> None:
    proc, url, log = start(folder, "run", "graph.yaml", "--snapshot-period", "1", "--max-retries", "2",
                           "--retry-interval", "0", "--ui-port", "0", faults="port_callback:sink:30")
    try:
        assert url.startswith("http://127.0.0.1:")
        page = browser.new_page(viewport={"width": 1280, "height": 900}, bypass_csp=True)  # lets tests wait on JS
        page.goto(url)
        print(f"first render {first_render_ms(page):.0f} ms after navigation start")
        for operator in ("gen", "double", "sink"):
            assert page.locator(f"#picture svg g.node[data-operator={operator}]").count() == 1
        for group in ("left", "right"):
            assert page.locator(f"#picture svg g.group[data-group={group}]").count() == 1
        assert page.locator("#picture svg g.edge").count() == 2

        # The injected failure (the sink's 30th message) shows with its traceback once recovered.
        failure = page.locator("#failures .failure[data-operator=sink]")
        failure.locator("pre.traceback").wait_for(timeout=WAIT_MS)
        shown = failure.locator("pre.traceback").inner_text()
        assert "InjectedFault: injected fault at port_callback of 'sink'" in shown
        assert shown == page.evaluate("monitor.view.failures[0].traceback").strip()
        assert "port callback" in failure.inner_text()
        page.locator("#attempts tr[data-attempt='2']").wait_for(timeout=WAIT_MS)
        page.wait_for_function("monitor.view && monitor.view.attempt === 2 && monitor.view.status === 'running'",
                               timeout=WAIT_MS)

        # Counters advance between two reads (of the table and of the edge label).
        before = cell(page, "sink", 3)
        edge = page.locator("#picture g.edge[data-edge='double.out->sink.in'] text")
        label = edge.text_content() or ""
        page.wait_for_function(
            f"Number(document.querySelector('#operators tr[data-operator=sink] td:nth-child(4)')"
            f".textContent.replace(/,/g, '')) > {before}", timeout=WAIT_MS)
        assert cell(page, "sink", 3) > before and re.fullmatch(r"[\d,]+ msgs · [\d,]+ rows", label)
        page.wait_for_function(f"document.querySelector(\"g.edge[data-edge='double.out->sink.in'] text\")"
                               f".textContent !== {label!r}", timeout=WAIT_MS)

        # A completed checkpoint with per-operator times.
        epoch = page.locator("#checkpoints tr[data-status=completed]").first
        epoch.wait_for(timeout=WAIT_MS)
        epoch.locator("summary").click()
        assert epoch.locator("div[data-operator=sink]").inner_text().startswith("sink: ")

        page.locator("#picture g.node[data-operator=sink] rect.box").click()  # the operator's details
        assert page.locator("#operator-details #ports tr").count() == 2  # header + its one input
        run_id = page.evaluate("monitor.view.run")
        assert page.locator(f"#runs tr[data-run='{run_id}']").count() == 1
        page.screenshot(path=str(folder / "monitor.png"), full_page=True)
        assert (folder / "monitor.png").read_bytes()[:4] == b"\x89PNG"
        page.close()
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    assert code == 0, log.read_text()
    no_process_left(folder)

    # The past run, from the store, without a running graph.
    ui, url, log = start(folder, "ui", "--store", ".snapgraph/snapshots.db", "--port", "0")
    try:
        page = browser.new_page(bypass_csp=True)
        page.goto(url)
        first_render_ms(page)
        row = page.locator(f"#runs tr[data-run='{run_id}']")
        assert "stopped" in row.inner_text()
        assert page.locator("#checkpoints tr[data-status=completed]").count() >= 1
        assert page.locator("#picture svg g.node").count() == 3  # the graph file still loads
        assert page.locator("#picture svg g.group").count() == 2
        page.close()
    finally:
        ui.send_signal(signal.SIGINT)
        assert ui.wait(timeout=30) == 0, log.read_text()


def test_the_monitor_is_read_only_and_answers_unknown_pages_and_runs_with_404(folder: Path) -> None:
    assert snapgraph_cli("run", "graph.yaml", "--snapshot-period", "1", "--stop-after", "1.5",
                         cwd=folder).returncode == 0
    ui, url, log = start(folder, "ui", "--port", "0")
    try:
        with urllib.request.urlopen(url + "api/runs") as response:
            assert response.headers["Content-Type"] == "application/json"
            assert b'"mode": "store"' in response.read()
        for path, status in (("api/run?run=nope", 404), ("nope", 404), ("static/../web.py", 404)):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(url + path)
            assert err.value.code == status, path
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(urllib.request.Request(url + "api/runs", data=b"{}", method="POST"))
        assert err.value.code == 501  # no method that could change anything is served
    finally:
        ui.send_signal(signal.SIGINT)
        assert ui.wait(timeout=30) == 0, log.read_text()


def test_a_port_that_cannot_be_bound_and_a_missing_store_are_refused_with_exit_2(folder: Path) -> None:
    missing = snapgraph_cli("ui", "--store", "none.db", "--port", "0", cwd=folder)
    assert missing.returncode == 2 and "none.db" in missing.stderr
    assert snapgraph_cli("run", "graph.yaml", "--snapshot-period", "1", "--stop-after", "1",
                         cwd=folder).returncode == 0
    ui, url, log = start(folder, "ui", "--port", "0")
    try:
        port = url.rsplit(":", 1)[1].strip("/")
        taken = snapgraph_cli("run", "graph.yaml", "--ui-port", port, "--stop-after", "1", cwd=folder)
        assert taken.returncode == 2 and f"cannot serve the web monitor on 127.0.0.1:{port}" in taken.stderr
    finally:
        ui.send_signal(signal.SIGINT)
        assert ui.wait(timeout=30) == 0, log.read_text()
