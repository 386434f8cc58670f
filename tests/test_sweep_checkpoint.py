"""The causal sweep of the two-layer DMFT checkpoints every checkpoint_every rows of its pass and
resumes mid-pass bit-identically to an uninterrupted run (kernels and every observable)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dmft.solvers.checkpoint import read_checkpoint
from dmft.two_layer import solve

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(alpha=1.0, ratio=2.0, eps=0.1, dim=50, t_max=2.0, dt=0.2, nodes=4, samples=4)


class Stop(Exception):
    pass


def _assert_identical(a, b):
    assert a.kernels.keys() == b.kernels.keys() and a.observables.keys() == b.observables.keys()
    for k in a.kernels:
        assert np.array_equal(a.kernels[k], b.kernels[k]), k
    for k in a.observables:
        assert np.array_equal(a.observables[k], b.observables[k], equal_nan=True), k


@pytest.mark.parametrize("finite_size", [False, True])
def test_stopped_sweep_resumes_bit_identically(tmp_path, monkeypatch, finite_size):
    reference = solve(**SMALL, finite_size=finite_size)
    out = tmp_path / "run.h5"
    module = sys.modules["dmft.two_layer.solve"]

    def stop_at_row_7(self, stage, t):
        if stage == "sweep" and t == 7:
            raise Stop

    monkeypatch.setattr(module._Progress, "report", stop_at_row_7)
    with pytest.raises(Stop):
        solve(**SMALL, finite_size=finite_size, out=out, checkpoint_every=3)
    monkeypatch.undo()
    stored, solver = read_checkpoint(out)
    assert stored.status.name == "RUNNING" and int(solver["sweep_pass"]["next_row"]) == 6
    assert "rows 0..5 of 0..10 done" in stored.message
    train = stored.observables["train_loss"]
    assert np.all(np.isfinite(train[:6])) and np.all(np.isnan(train[6:]))
    resumed = solve(**SMALL, finite_size=finite_size, out=out, resume=True)
    _assert_identical(resumed, reference)
    _assert_identical(read_checkpoint(out)[0], reference)  # the file holds the whole result


def test_checkpoint_of_a_sweep_refuses_other_replicas(tmp_path, monkeypatch):
    from dmft.solvers.checkpoint import ResumeMismatchError

    out = tmp_path / "run.h5"
    module = sys.modules["dmft.two_layer.solve"]
    monkeypatch.setattr(module._Progress, "report",
                        lambda self, stage, t: (_ for _ in ()).throw(Stop()) if t == 4 else None)
    with pytest.raises(Stop):
        solve(**SMALL, out=out, checkpoint_every=2)
    monkeypatch.undo()
    with pytest.raises(ResumeMismatchError, match="replicas: file None, now 3"):
        solve(**SMALL, replicas=3, out=out, resume=True)


def test_killed_cli_sweep_resumes_bit_identically(tmp_path):
    params = dict(alpha=1.0, ratio=2.0, eps=0.1, dim=50, t_max=10.0, dt=0.2, nodes=8, samples=16)
    out = tmp_path / "killed.h5"
    args = ["solve", "--checkpoint-every", "2", "--out", str(out), "--quiet"]
    for key, value in params.items():
        args += ["--" + key.replace("_", "-"), str(value)]
    proc = subprocess.Popen([sys.executable, "-m", "dmft.cli", *args], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not out.exists():
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    stored, solver = read_checkpoint(out)
    assert stored.status.name == "RUNNING", "the run ended before it was killed"
    assert 0 < int(solver["sweep_pass"]["next_row"]) < 51
    _assert_identical(solve(**params, out=out, resume=True), solve(**params))
