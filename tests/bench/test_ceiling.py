"""The ceiling model of bench/ceiling.py: the arithmetic the benchmark report relies on."""

import importlib.util
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location("bench_ceiling", Path(__file__).parents[2] / "bench" / "ceiling.py")
ceiling_mod = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(ceiling_mod)

COSTS = {"generate": 100.0, "process": 60.0, "sink": 10.0, "free input rows": 20.0, "free output rows": 10.0,
         "encode input": 50.0, "decode input": 80.0, "encode output": 40.0, "decode output": 60.0}


def test_stages_pay_the_boundary_and_the_plain_loop_does_not():
    c = ceiling_mod.ceiling(COSTS, cores=2)
    assert c["plain_us"] == 100 + 60 + 10 + 20 + 10
    assert c["stages_us"] == {"generator": 100 + 50 + 20, "processing": 80 + 60 + 20 + 40 + 10, "sink": 60 + 10 + 10}
    assert c["boundary_us"] == c["total_us"] - c["plain_us"] == 50 + 80 + 20 + 40 + 60 + 10


def test_best_time_is_bound_by_the_cores_or_by_the_slowest_stage():
    two = ceiling_mod.ceiling(COSTS, cores=2)
    assert two["best_us"] == pytest.approx(two["total_us"] / 2) and two["bound"] == "cores"
    many = ceiling_mod.ceiling(COSTS, cores=8)
    assert many["best_us"] == 210 and many["bound"] == "slowest stage"
    assert many["max_ratio_vs_plain"] == pytest.approx(200 / 210)


def test_multiplicity_splits_the_processing_stage():
    c = ceiling_mod.ceiling(COSTS, cores=8, processing_instances=3)
    assert [k for k in c["stages_us"]] == ["generator", "processing #0", "processing #1", "processing #2", "sink"]
    assert c["stages_us"]["processing #1"] == pytest.approx(70)
    assert c["best_us"] == 170  # now the generator is the slowest stage


def test_unit_costs_are_measured_for_every_piece():
    costs = ceiling_mod.unit_costs(hash_rounds=1, tables=5, repeats=1)
    assert set(costs) == set(COSTS) and all(v > 0 for v in costs.values())
