"""Old code against new code, side by side: W1 through the same configurations of bench/run.py.

    bench/.venv/bin/python bench/ab.py OLD NEW [--configs d,b] [--rounds 8] [--rows 2000000]

OLD and NEW are git revisions of this repository (``HEAD``, a commit, ``WORKTREE`` for the working
tree as it is). Each is exported into a folder of its own (``git archive``) and run by its own
``bench/worker.py`` with its sources first on ``PYTHONPATH``, in the bench virtualenv; rounds alternate
which side runs first. The report gives, per configuration, every round's rows/s of both sides, the
ratio of the medians and the median of the per-round ratios (which cancels a machine whose speed
drifts between rounds).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {  # as in bench/run.py pipeline_configs
    "b": {"kind": "snapgraph", "in_process": True, "snapshots": False},
    "c": {"kind": "snapgraph", "in_process": None, "snapshots": False},
    "d": {"kind": "snapgraph", "in_process": None, "snapshots": True},
}


def export(revision: str, where: Path) -> Path:
    where.mkdir(parents=True)
    if revision == "WORKTREE":
        for part in ("src", "bench"):
            shutil.copytree(REPO / part, where / part, ignore=shutil.ignore_patterns(".venv", "__pycache__"))
        return where
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision, "src", "bench"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return where


def run_once(tree: Path, spec: dict[str, object], scratch: Path) -> float:
    spec_file, result_file = scratch / "spec.json", scratch / "result.json"
    spec_file.write_text(json.dumps(spec))
    env = dict(os.environ, PYTHONPATH=str(tree / "src"))
    subprocess.run([sys.executable, str(tree / "bench" / "worker.py"), str(spec_file), str(result_file)],
                   env=env, cwd=tree, check=True)
    result = json.loads(result_file.read_text())
    if not result.get("ok"):
        raise SystemExit(f"{tree.name}: {result.get('error')}")
    return float(spec["rows"]) / float(result["pipeline_s"])  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--configs", default="d,b", help="comma-separated, of " + ",".join(CONFIGS))
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--rows", type=int, default=2_000_000)
    args = parser.parse_args()
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        parser.error(f"unknown configuration(s) {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    with tempfile.TemporaryDirectory(prefix="snapgraph-ab-") as tmp:
        trees = {"old": export(args.old, Path(tmp) / "old"), "new": export(args.new, Path(tmp) / "new")}
        rates: dict[tuple[str, str], list[float]] = {(side, c): [] for side in trees for c in configs}
        for r in range(args.rounds):
            for config in configs:
                spec = dict(CONFIGS[config], rows=args.rows, batch=1000, hash_rounds=0)
                for side in ("old", "new") if r % 2 == 0 else ("new", "old"):
                    rates[(side, config)].append(run_once(trees[side], spec, Path(tmp)))
                print(f"  round {r + 1}/{args.rounds} ({config}) old {rates[('old', config)][-1] / 1e6:.3f} "
                      f"new {rates[('new', config)][-1] / 1e6:.3f} M rows/s", flush=True)
    for config in configs:
        old, new = rates[("old", config)], rates[("new", config)]
        ratios = [n / o for o, n in zip(old, new)]
        print(f"({config}) old {statistics.median(old) / 1e6:.3f} ({' '.join(f'{x / 1e6:.2f}' for x in old)})  "
              f"new {statistics.median(new) / 1e6:.3f} ({' '.join(f'{x / 1e6:.2f}' for x in new)})  "
              f"new/old {statistics.median(new) / statistics.median(old):.3f}, per-round median "
              f"{statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
