"""Load time of the web monitor in a real browser (Debian's chromium, driven by Playwright).

    bench/.venv/bin/python bench/web_load.py [--loads 10] [--warmups 2] [--out results.json]

Two cases, as docs/monitoring.md reports them: ``snapgraph run examples/tour.yaml --ui-port 0`` while the
graph runs, and ``snapgraph ui --store …`` on the store that run left. Every load is a fresh browser
context (nothing cached); for each the page's DOMContentLoaded and its first render (navigation start to
the first run view drawn, ``monitor.firstRender``: the JSON answers included) are taken from the page
itself. Medians and ranges over the loads after the warm-ups; the bytes served are the page's three files.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TOUR = REPO / "examples" / "tour.yaml"
STATIC = REPO / "src" / "snapgraph" / "monitor" / "static"


def serve(args: list[str], cwd: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``snapgraph ARGS``; the monitor's address it prints."""
    log = cwd / f"stderr-{args[0]}.txt"
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "snapgraph", *args], cwd=cwd, stderr=err,
                                stdout=subprocess.DEVNULL, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    deadline = time.monotonic() + 60
    while not (found := re.search(r"monitor at (http://\S+)", log.read_text())):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"snapgraph {' '.join(args)} did not serve a monitor: {log.read_text()}")
        time.sleep(0.05)
    return proc, found.group(1)


def load_times(browser: Any, url: str, loads: int, warmups: int) -> dict[str, Any]:
    dom, first = [], []
    for i in range(warmups + loads):
        context = browser.new_context()
        page = context.new_page()
        page.goto(url)
        page.wait_for_selector("body[data-rendered]", timeout=30_000)
        timing = page.evaluate("performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd")
        rendered = page.evaluate("monitor.firstRender")
        context.close()
        if i >= warmups:
            dom.append(float(timing))
            first.append(float(rendered))
    return {"dom_content_loaded_ms": dom, "first_render_ms": first}


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):.0f} ms ({min(values):.0f}-{max(values):.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loads", type=int, default=10)
    parser.add_argument("--warmups", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("web_load.py needs Debian's chromium (apt-get install -y chromium)")
    served = {name: len((STATIC / name).read_bytes()) for name in ("index.html", "app.js", "app.css")}
    results: dict[str, Any] = {"served_bytes": served}
    with tempfile.TemporaryDirectory(prefix="snapgraph-web-load-") as tmp, sync_playwright() as playwright:
        folder = Path(tmp)
        shutil.copy(TOUR, folder / "tour.yaml")
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            run, url = serve(["run", "tour.yaml", "--ui-port", "0", "--no-progress"], folder)
            try:
                while not json.loads(urllib.request.urlopen(url + "api/run").read())["completed_epochs"]:  # noqa: S310
                    time.sleep(0.2)  # a first epoch, so the checkpoint history has a row to draw
                results["live"] = load_times(browser, url, args.loads, args.warmups)
            finally:
                run.send_signal(signal.SIGINT)
                run.wait(60)
            ui, url = serve(["ui", "--store", ".snapgraph/snapshots.db", "--port", "0"], folder)
            try:
                results["store"] = load_times(browser, url, args.loads, args.warmups)
            finally:
                ui.send_signal(signal.SIGINT)
                ui.wait(60)
        finally:
            browser.close()
    print(f"served bytes: {sum(served.values())} ({' + '.join(str(v) for v in served.values())})")
    for case in ("store", "live"):
        print(f"{case:5}  DOMContentLoaded {summary(results[case]['dom_content_loaded_ms'])}  "
              f"first render {summary(results[case]['first_render_ms'])}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
