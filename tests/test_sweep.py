"""Derived times (on synthetic curves with known answers) and Dask sweeps: completion, the
index, resuming without recomputing, failing points recorded while the others finish.

The sweeps are tiny (t_max = 0.8, nodes = samples = 4: ~0.1 s per solve) and share one
2-worker LocalCluster per module; one test starts the embedded cluster itself (~2 s)."""
import json
import math
import os

import numpy as np
import pytest
from click.testing import CliRunner

from dmft.derived import GrokkingTimes, crossing_time, grokking_times
from dmft.sweep import INDEX_NAME, load_index, point_name, sweep
from dmft.params import ParameterError

TINY = dict(eps=0.1, dim=50, t_max=0.8, dt=0.2, nodes=4, samples=4)


# ------------------------------------------------------------------------------ derived
def test_crossing_time_interpolates_linearly():
    tau = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    curve = np.array([1.0, 0.9, 0.6, 0.2, 0.1])  # half (0.5) crossed between tau 2 and 3: 2 + 0.1/0.4
    assert crossing_time(tau, curve) == pytest.approx(2.25, abs=1e-14)
    assert crossing_time(tau, curve, fraction=0.15) == pytest.approx(3.5, abs=1e-14)
    # on a straight line the interpolation is exact, on any grid
    t = np.sort(np.concatenate([[0.0], np.random.default_rng(0).uniform(0, 10, 37)]))
    assert crossing_time(t, 2.0 - 0.3 * t) == pytest.approx(1.0 / 0.3, rel=1e-12)
    # explicit reference; a record exactly at the threshold is not yet "below"
    assert crossing_time(tau, curve, reference=1.4) == pytest.approx(1.0 + 0.2 / 0.3, abs=1e-14)
    assert crossing_time(tau, curve, reference=1.8) == 1.0
    assert crossing_time([0.0, 1.0, 2.0], [1.0, 0.5, 0.0]) == pytest.approx(1.0)


def test_crossing_time_never_and_edge_cases():
    tau = np.linspace(0, 5, 11)
    assert math.isnan(crossing_time(tau, 1.0 - 0.05 * tau))  # ends at 0.75 > 0.5
    assert math.isnan(crossing_time(tau, np.full(11, np.nan)))
    assert crossing_time(tau, np.r_[1.0, np.nan, 0.2, 0.1 * np.ones(8)]) == pytest.approx(1.0)  # NaN before: snap
    assert crossing_time(tau, 0.3 + 0 * tau, reference=1.0) == 0.0  # already below at tau[0]
    assert math.isnan(crossing_time([], []))
    with pytest.raises(ValueError):
        crossing_time([0, 1], [1.0])


def test_grokking_times_of_synthetic_curves():
    tau = np.linspace(0.0, 100.0, 100001)
    train = 0.8 * np.exp(-tau / 10)  # half at 10 ln 2
    test = 0.75 / (1 + (tau / 40) ** 4)  # half at tau = 40
    g = grokking_times({"tau": tau, "train_loss": train, "test_loss": test})
    assert g.t_train == pytest.approx(10 * math.log(2), rel=1e-7)
    assert g.t_test == pytest.approx(40.0, rel=1e-7)
    assert g.delay == pytest.approx(40 / (10 * math.log(2)), rel=1e-6)
    assert math.isnan(g.delay_lower_bound) and g.train_initial == 0.8 and g.tau_max == 100.0
    # a test loss that first rises above its initial value (as in grokking): the reference stays L(0)
    bump = test * (1 + 0.3 * np.exp(-((tau - 5) / 3) ** 2) * (tau > 0))
    assert bump.max() > 0.95
    assert grokking_times({"tau": tau, "train_loss": train, "test_loss": bump}).t_test == pytest.approx(40, rel=1e-7)
    # never generalises within the window: delay NaN, lower bound tau_max / t_train
    g = grokking_times({"observables": {"tau": tau, "train_loss": train, "test_loss": 0.75 + 0 * tau}})
    assert math.isnan(g.t_test) and math.isnan(g.delay)
    assert g.delay_lower_bound == pytest.approx(100 / (10 * math.log(2)), rel=1e-6)
    # a run that diverged keeps NaN after its last good record: the window ends there
    cut = np.where(tau <= 50, 1.0, np.nan)
    g2 = grokking_times({"tau": tau, "train_loss": train * cut, "test_loss": (0.75 + 0 * tau) * cut})
    assert g2.tau_max == 50.0 and g2.delay_lower_bound == pytest.approx(50 / (10 * math.log(2)), rel=1e-6)
    d = g.as_dict()
    assert set(d) == {"t_train", "t_test", "fraction", "tau_max", "train_initial", "test_initial", "delay",
                      "delay_lower_bound"}
    g = grokking_times({"tau": tau, "train_loss": train, "test_loss": test}, fraction=0.1)
    assert g.t_train == pytest.approx(10 * math.log(10), rel=1e-6) and g.fraction == 0.1
    with pytest.raises(ValueError, match="fraction"):
        grokking_times({"tau": tau, "train_loss": train, "test_loss": test}, fraction=1.5)
    assert isinstance(g, GrokkingTimes)


def test_grokking_times_of_results_and_files(tmp_path):
    import dmft

    res = dmft.solve(alpha=1.0, ratio=2.0, **TINY)
    sim = dmft.simulate(alpha=1.0, ratio=2.0, eps=0.1, dim=20, dt=0.2, t_max=0.8, seeds=2)
    dmft.save(res, tmp_path / "r.h5")
    sim.save(tmp_path / "s.h5")
    obs = res.observables
    want = crossing_time(obs["tau"], obs["train_loss"])
    assert grokking_times(res).t_train == want or (math.isnan(want) and math.isnan(grokking_times(res).t_train))
    assert grokking_times(tmp_path / "r.h5").as_dict() == pytest.approx(grokking_times(res).as_dict(), nan_ok=True)
    assert grokking_times(str(tmp_path / "s.h5")).as_dict() == pytest.approx(grokking_times(sim).as_dict(),
                                                                             nan_ok=True)
    assert grokking_times(sim).test_initial == sim.observables["test_loss"][0]


# -------------------------------------------------------------------------------- sweep
@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                       env={"OPENBLAS_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"})
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def _mtimes(outdir):
    return {p: os.stat(outdir / p).st_mtime_ns for p in os.listdir(outdir) if p.endswith(".h5")}


def test_sweep_completes_writes_index_and_resumes_without_recomputing(tmp_path, client):
    grid = {"alpha": [0.5, 1.0], "ratio": [1.0, 2.0]}
    res = sweep(grid, tmp_path, scheduler=client, progress=False, **TINY)
    assert sorted(res.computed) == sorted(p["name"] for p in res.points) and not res.failed and not res.skipped
    index = load_index(tmp_path)
    assert len(index["points"]) == 4 and index["format"] == "dmft-sweep"
    assert [(p["parameters"]["alpha"], p["parameters"]["ratio"]) for p in index["points"]] == \
        [(0.5, 1.0), (0.5, 2.0), (1.0, 1.0), (1.0, 2.0)]
    for p in index["points"]:
        assert p["status"] == "done" and p["error"] is None
        assert p["parameters"] == {"alpha": p["parameters"]["alpha"], "ratio": p["parameters"]["ratio"], **TINY}
        assert p["file"] == point_name(p["parameters"], ["alpha", "ratio"]) + ".h5"
        assert p["file"].startswith(f"alpha{p['parameters']['alpha']:g}_ratio{p['parameters']['ratio']:g}-")
        want = grokking_times(tmp_path / p["file"]).as_dict()
        assert set(p["derived"]) == set(want)
        for k, v in want.items():
            assert (p["derived"][k] is None and math.isnan(v)) or p["derived"][k] == pytest.approx(v)
    import dmft.io

    kind, params = dmft.io.read_parameters(tmp_path / index["points"][3]["file"])
    assert kind == "dmft-two-layer" and params["alpha"] == 1.0 and params["ratio"] == 2.0
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    before = _mtimes(tmp_path)
    assert len(before) == 4
    # re-run: nothing recomputed (the files are untouched), the index still lists all four
    res2 = sweep(grid, tmp_path, scheduler=client, progress=False, **TINY)
    assert res2.computed == [] and len(res2.skipped) == 4
    assert _mtimes(tmp_path) == before
    index2 = load_index(tmp_path)
    assert [p["derived"] for p in index2["points"]] == [p["derived"] for p in index["points"]]
    assert all(p["skipped"] and p["status"] == "done" for p in index2["points"])
    # a truncated file is not "readable": only that point is recomputed; a larger grid adds points
    victim = tmp_path / index["points"][1]["file"]
    victim.write_bytes(victim.read_bytes()[:100])
    res3 = sweep({"alpha": [0.5, 1.0], "ratio": [1.0, 2.0, 3.0]}, tmp_path, scheduler=client, progress=False, **TINY)
    assert sorted(res3.computed) == sorted([index["points"][1]["name"]] +
                                           [p["name"] for p in res3.points if p["parameters"]["ratio"] == 3.0])
    assert len(res3.skipped) == 3 and len(load_index(tmp_path)["points"]) == 6
    after = _mtimes(tmp_path)
    assert all(after[f] == before[f] for f in before if f != victim.name) and after[victim.name] != before[victim.name]


def test_failing_point_is_recorded_and_the_others_finish(tmp_path):
    # the embedded LocalCluster (2 worker processes), as `dmft sweep` uses by default; t_max = 4000
    # passes the range checks (20000 steps) but its kernels need far more memory than there is, so
    # those points fail on the worker
    fixed = {k: v for k, v in TINY.items() if k != "t_max"}
    res = sweep({"alpha": [1.0, 2.0], "t_max": [0.8, 4000.0]}, tmp_path, n_workers=2, progress=False, ratio=1.0,
                **fixed)
    assert len(res.failed) == 2 and len(res.computed) == 2
    index = json.loads((tmp_path / INDEX_NAME).read_text())
    bad = [p for p in index["points"] if p["parameters"]["t_max"] == 4000.0]
    good = [p for p in index["points"] if p["parameters"]["t_max"] == 0.8]
    assert all(p["status"] == "failed" and "invalid memory request" in p["error"] and p["derived"] is None
               for p in bad)
    assert all(p["status"] == "done" and (tmp_path / p["file"]).exists() for p in good)
    assert not any((tmp_path / p["file"]).exists() for p in bad)


def test_a_value_out_of_range_is_refused_before_any_point_runs(tmp_path):
    with pytest.raises(ParameterError, match=r"invalid alpha=-1.0: allowed range is 0 < alpha <= 1e4"):
        sweep({"alpha": [1.0, -1.0], "ratio": [1.0]}, tmp_path, progress=False, **TINY)
    with pytest.raises(ParameterError, match=r"invalid seeds=0"):
        sweep({"alpha": [1.0], "ratio": [1.0]}, tmp_path, progress=False, simulate={"seeds": 0}, **TINY)
    assert not list(tmp_path.glob("*.h5"))


def test_sweep_of_explicit_points(tmp_path, client):
    # a list of dicts: exactly these points (here t_max grows with alpha; no Cartesian product)
    pts = [{"alpha": 0.5, "ratio": 2.0, "t_max": 0.4}, {"alpha": 1.0, "ratio": 2.0, "t_max": 0.8}]
    fixed = {k: v for k, v in TINY.items() if k != "t_max"}
    res = sweep(pts, tmp_path, scheduler=client, progress=False, **fixed)
    assert len(res.computed) == 2 and res.index["explicit_points"]
    assert res.index["grid"] == {"alpha": [0.5, 1.0], "ratio": [2.0, 2.0], "t_max": [0.4, 0.8]}
    for want, p in zip(pts, res.points):
        assert p["parameters"] == {**want, **fixed} and p["derived"]["tau_max"] == pytest.approx(want["t_max"])
        assert p["file"].startswith(f"alpha{want['alpha']:g}_ratio2_t_max{want['t_max']:g}-")
    from dmft.plot import phase_grid

    assert phase_grid(tmp_path).xs == [0.5, 1.0]  # t_max differs per cell: no conflict


def test_sweep_validates_before_computing(tmp_path):
    with pytest.raises(ValueError, match="grid key 'alfa'"):
        sweep({"alfa": [1.0]}, tmp_path, ratio=1.0)
    with pytest.raises(ValueError, match="also swept"):
        sweep({"alpha": [1.0]}, tmp_path, alpha=2.0, ratio=1.0)
    with pytest.raises(ValueError, match="ratio is neither"):
        sweep({"alpha": [1.0]}, tmp_path)
    with pytest.raises(ValueError, match="non-empty list"):
        sweep({"alpha": [], "ratio": [1.0]}, tmp_path)
    with pytest.raises(ValueError, match="ratio is neither"):
        sweep([{"alpha": 1.0, "ratio": 1.0}, {"alpha": 2.0}], tmp_path)
    with pytest.raises(ValueError, match="point key 'x'"):
        sweep([{"alpha": 1.0, "ratio": 1.0, "x": 1}], tmp_path)
    with pytest.raises(ValueError, match="simulate option"):
        sweep({"alpha": [1.0], "ratio": [1.0]}, tmp_path, simulate={"widht": 10})
    assert not (tmp_path / INDEX_NAME).exists()


def test_cli_sweep_with_simulations_then_phase(tmp_path, client):
    from dmft.cli import main

    address = client.scheduler.address
    args = ["sweep", "--alpha", "0.5,1", "--ratio", "2", "--eps", "0.1", "--dim", "50", "--t-max", "0.8",
            "--dt", "0.2", "--nodes", "4", "--samples", "4", "--sim-seeds", "2", "--sim-dim", "20",
            "--outdir", str(tmp_path / "sw"), "--scheduler", address, "--quiet"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "2 points: 2 computed, 0 already done, 0 failed" in r.output
    index = load_index(tmp_path / "sw")
    for p in index["points"]:
        assert p["status"] == "done" and p["sim_file"].endswith(".sim.h5")
        import dmft.io

        kind, params = dmft.io.read_parameters(tmp_path / "sw" / p["sim_file"])
        assert kind == "simulation" and params["dim"] == 20 and params["seeds"] == 2 and params["dt"] == 0.2
        assert set(p["sim_derived"]) >= {"t_train", "t_test", "delay"}
    r = CliRunner().invoke(main, args)
    assert "2 points: 0 computed, 2 already done" in r.output
    r = CliRunner().invoke(main, ["phase", str(tmp_path / "sw"), "-o", str(tmp_path / "phase.png")])
    assert r.exit_code == 0, r.output and (tmp_path / "phase.png").exists()
    r = CliRunner().invoke(main, ["sweep", "--alpha", "1,x", "--ratio", "2", "--outdir", str(tmp_path)])
    assert r.exit_code == 2 and "comma-separated" in r.output
    r = CliRunner().invoke(main, ["sweep", "--help"])
    assert "tau" in r.output and "--scheduler" in r.output and "--workers" in r.output


# ----------------------------------------------------------------- concurrent sweeps
def test_a_second_grid_in_the_same_directory_keeps_the_first_grids_points(tmp_path, client):
    first = sweep({"alpha": [0.5, 1.0], "ratio": [1.0]}, tmp_path, scheduler=client, progress=False, **TINY)
    second = sweep({"alpha": [2.0], "ratio": [1.0, 2.0]}, tmp_path, scheduler=client, progress=False, **TINY)
    assert len(first.computed) == 2 and len(second.computed) == 2 and len(second.points) == 2
    names = [p["name"] for p in load_index(tmp_path)["points"]]
    assert names == [p["name"] for p in first.points] + [p["name"] for p in second.points]
    assert all(p["status"] == "done" for p in load_index(tmp_path)["points"])
    # a failing point (20000 steps: kernels beyond any memory): reported, and the index keeps everything else
    third = sweep({"alpha": [1.0], "ratio": [1.0]}, tmp_path, scheduler=client, progress=False,
                  **{**TINY, "t_max": 4000.0})
    assert len(third.failed) == 1
    assert len(load_index(tmp_path)["points"]) == 5
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def _cli_sweep(outdir, address, alphas="0.5,1,2"):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    args = [sys.executable, "-m", "dmft.cli", "sweep", "--alpha", alphas, "--ratio", "1,2", "--eps", "0.1",
            "--dim", "50", "--t-max", "3", "--dt", "0.2", "--nodes", "6", "--samples", "6", "--outdir", str(outdir),
            "--scheduler", address, "--quiet"]
    return subprocess.Popen(args, cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _counts(log):
    import re

    m = re.search(r"(\d+) points: (\d+) computed, (\d+) already done, (\d+) failed", log)
    return tuple(int(g) for g in m.groups())


def test_two_concurrent_sweeps_compute_every_point_once(tmp_path, client):
    procs = [_cli_sweep(tmp_path, client.scheduler.address) for _ in range(2)]
    logs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        logs.append(_counts(out))
    assert all(total == 6 and failed == 0 for total, _, _, failed in logs)
    assert sum(computed for _, computed, _, _ in logs) == 6  # each point computed by exactly one sweep
    index = load_index(tmp_path)
    assert len(index["points"]) == 6 and all(p["status"] == "done" for p in index["points"])
    assert len([f for f in os.listdir(tmp_path) if f.endswith(".h5")]) == 6


@pytest.mark.slow
def test_a_point_held_by_another_worker_is_waited_for_not_recomputed(tmp_path, client):
    from dmft.solvers.checkpoint import write_result
    from dmft.solvers.locking import hold
    from dmft.two_layer import solve

    from dmft.sweep import SOLVE_KEYS

    given = {"alpha": 1.0, "ratio": 1.0, "eps": 0.1, "noise": 0.0, "dim": 50, "t_max": 3.0, "dt": 0.2, "samples": 6,
             "nodes": 6, "seed": 0, "replicas": None, "mc_tol": 0.003, "grid": "uniform",
             "rtol": 0.001}  # the point as `dmft sweep` (_cli_sweep) names it
    params = {k: given[k] for k in SOLVE_KEYS if k in given}
    target = tmp_path / (point_name(params, ["alpha", "ratio"]) + ".h5")
    with hold(target):  # "another worker" owns the point
        proc = _cli_sweep(tmp_path, client.scheduler.address, alphas="1")
        import time

        time.sleep(3)
        assert proc.poll() is None  # the sweep waits for the point
        write_result(target, solve(**params))
        mine = os.stat(target).st_ino
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert _counts(out) == (2, 1, 1, 0)  # ratio 2 computed; ratio 1 found done after the wait
    assert os.stat(target).st_ino == mine  # not written again
    entry = next(p for p in load_index(tmp_path)["points"] if p["parameters"]["ratio"] == 1.0)
    assert entry["status"] == "done" and entry["skipped"] and entry["derived"] is not None


def test_cli_sweep_exits_1_naming_the_failed_points(tmp_path, client):
    from dmft.cli import main

    # t-max 4000 at dt 0.2 is within range (20000 steps) but needs kernels beyond any memory: both points fail
    res = CliRunner().invoke(main, ["sweep", "--alpha", "1,2", "--ratio", "1", "--eps", "0.1",
                                                    "--dim", "50", "--t-max", "4000", "--nodes", "4", "--samples", "4",
                                                    "--outdir", str(tmp_path), "--scheduler",
                                                    client.scheduler.address, "--quiet"])
    assert res.exit_code == 1
    assert "2 points: 0 computed, 0 already done, 2 failed" in res.stdout
    line = res.stderr.strip()
    assert line.startswith("error: 2 of 2 points failed: ") and "alpha1_ratio1-" in line and "alpha2_ratio1-" in line
