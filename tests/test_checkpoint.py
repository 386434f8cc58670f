"""The result file is the checkpoint: bitwise resume, refusals, corrupted files."""
import shutil

import h5py
import numpy as np
import pytest

from dmft.io import FileFormatError, read_h5, read_parameters, write_h5
from dmft.linear import LinearDMFT, solve_linear
from dmft.params import LinearModel, ParameterError
from dmft.solvers.fixed_point import FixedPointOptions, iterate
from dmft.solvers.grid import TimeGrid
from dmft.solvers.checkpoint import read_result, write_result
from dmft.solvers.result import SolverResult, Status

# ratio 0.5 with adaptive damping and Anderson: the residual rises at times, so the damping in force,
# the Anderson memory and the best iterate all change during the run -- the whole state is exercised.
CASE = dict(ratio=0.5, noise=0.5, t_max=10.0, steps=60, adaptive_damping=True, checkpoint_every=3)


def _assert_same_run(a: SolverResult, b: SolverResult):
    assert a.status is b.status and a.nit == b.nit
    assert np.array_equal(a.residuals, b.residuals)
    assert np.array_equal(a.state.changes, b.state.changes)
    assert a.damping == b.damping
    assert a.confirmation_residual == b.confirmation_residual
    for key in a.kernels:
        assert np.array_equal(a.kernels[key], b.kernels[key]), key
    for key in a.observables:
        assert np.array_equal(a.observables[key], b.observables[key]), key


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "ref.h5"
    res = solve_linear(**CASE, out=path)
    assert res.success and res.nit > 10
    assert len(set(res.state.residuals)) == res.nit
    assert np.any(np.diff(res.residuals) > 0)  # adaptive damping was used
    return res, path


def test_stop_iteration_then_resume_is_bitwise_identical(reference, tmp_path):
    ref, _ = reference
    out = tmp_path / "run.h5"

    def stop_at_7(info):
        if info.iteration == 7:
            raise StopIteration

    stopped = solve_linear(**CASE, out=out, callback=stop_at_7)
    assert stopped.status is Status.STOPPED and stopped.nit == 7
    assert read_result(out).status is Status.STOPPED
    resumed = solve_linear(**CASE, out=out, resume=True)
    _assert_same_run(resumed, ref)
    _assert_same_run(read_result(out), ref)


class Crash(Exception):
    pass


def test_crash_after_a_checkpoint_then_resume_is_bitwise_identical(reference, tmp_path):
    ref, _ = reference
    out, periodic = tmp_path / "run.h5", tmp_path / "periodic.h5"

    def crash_at_8(info):
        if info.iteration == 8:
            shutil.copy(out, periodic)  # the periodic checkpoint, written at iteration 6
            raise Crash

    with pytest.raises(Crash):
        solve_linear(**CASE, out=out, callback=crash_at_8)
    assert read_result(periodic).nit == 6 and read_result(periodic).status is Status.RUNNING
    assert read_result(out).nit == 8  # the crash handler saved the last consistent state
    _assert_same_run(solve_linear(**CASE, out=periodic, resume=True), ref)
    _assert_same_run(solve_linear(**CASE, out=out, resume=True), ref)


def test_max_iter_then_resume_with_more_iterations(reference, tmp_path):
    ref, _ = reference
    out = tmp_path / "run.h5"
    short = solve_linear(**CASE, out=out, max_iter=5)
    assert short.status is Status.MAX_ITER and short.nit == 5 and "max_iter=5" in short.message
    _assert_same_run(solve_linear(**CASE, out=out, resume=True), ref)


def test_resume_of_a_finished_run_returns_it(reference, tmp_path):
    ref, path = reference
    out = tmp_path / "done.h5"
    shutil.copy(path, out)
    again = solve_linear(**CASE, out=out, resume=True)
    assert again.nfev == 0
    _assert_same_run(again, ref)


def test_checkpoint_cadence(tmp_path):
    out = tmp_path / "run.h5"
    seen = []

    def look(info):
        seen.append((info.iteration, read_result(out).nit if out.exists() else None))

    solve_linear(**CASE, out=out, callback=look)
    for iteration, in_file in seen:
        assert in_file == (iteration // 3) * 3 or (iteration < 3 and in_file is None)


def test_save_load_round_trip(reference, tmp_path):
    ref, _ = reference
    write_result(tmp_path / "copy.h5", ref)
    back = read_result(tmp_path / "copy.h5", kind="dmft-linear")
    _assert_same_run(back, ref)
    assert back.parameters == ref.parameters and back.method == ref.method and back.kind == "dmft-linear"
    assert set(back.derived_kernels) == {"Gamma", "C_r"}
    kind, params = read_parameters(tmp_path / "copy.h5")
    assert kind == "dmft-linear" and params["ratio"] == 0.5 and params["t_first"] is None


def test_parameter_mismatch_is_refused_naming_both_values(reference, tmp_path):
    _, path = reference
    out = tmp_path / "run.h5"
    shutil.copy(path, out)
    with pytest.raises(ParameterError, match=r"ratio: file 0\.5, now 1\.0"):
        solve_linear(**{**CASE, "ratio": 1.0}, out=out, resume=True)
    with pytest.raises(ParameterError, match=r"steps: file 60, now 61"):
        solve_linear(**{**CASE, "steps": 61}, out=out, resume=True)
    with pytest.raises(ParameterError, match=r"accel: file 'anderson', now 'none'"):
        solve_linear(**CASE, accel="none", out=out, resume=True)
    with pytest.raises(FileFormatError, match="no such file"):
        solve_linear(**CASE, out=tmp_path / "missing.h5", resume=True)


def test_version_and_kind_mismatch(reference, tmp_path, monkeypatch):
    from dmft.solvers import hdf5

    _, path = reference
    tree = read_h5(path)
    with monkeypatch.context() as m:  # an intact file of another format version
        m.setattr(hdf5, "FORMAT_VERSION", 99)
        out = write_h5(tmp_path / "format_version.h5", kind=tree["attrs"]["kind"], parameters=tree["parameters"],
                       data={k: v for k, v in tree.items() if k not in ("attrs", "parameters")})
    with pytest.raises(FileFormatError, match="version 99"):
        solve_linear(**CASE, out=out, resume=True)
    out = tmp_path / "kind.h5"
    shutil.copy(path, out)
    with h5py.File(out, "a") as f:  # an edited attribute is caught by the checksum
        f.attrs["kind"] = "dmft-two-layer"
    with pytest.raises(FileFormatError, match="checksum"):
        solve_linear(**CASE, out=out, resume=True)
    write_h5(out, kind="dmft-two-layer", parameters={}, data={"observables": {"tau": np.zeros(1)}})
    with pytest.raises(FileFormatError, match="'dmft-two-layer' result, expected dmft-linear"):
        solve_linear(**CASE, out=out, resume=True)
    tree = read_h5(path)
    tree["solver"]["state_version"] = 7
    out = write_h5(tmp_path / "state.h5", kind=tree["attrs"]["kind"], parameters=tree.pop("parameters"),
                   data={k: v for k, v in tree.items() if k != "attrs"})
    with pytest.raises(FileFormatError, match="solver state version 7"):
        solve_linear(**CASE, out=out, resume=True)


def _load_or_error(path):
    """Either a clean FileFormatError, or (garbage landed in unused bytes) the intact result."""
    try:
        return read_result(path)
    except FileFormatError as exc:
        assert str(path) in str(exc)
        return None


def test_corrupted_files_give_file_format_errors(reference, tmp_path):
    ref, path = reference
    blob = path.read_bytes()
    cases = {"empty": b"", "text": b"not an HDF5 file at all\n" * 50}
    for frac in (0.01, 0.3, 0.6, 0.95, 0.999):
        cases[f"truncated-{frac}"] = blob[: int(len(blob) * frac)]
    for name, content in cases.items():
        bad = tmp_path / f"{name}.h5"
        bad.write_bytes(content)
        with pytest.raises(FileFormatError):
            read_result(bad)
        with pytest.raises(FileFormatError):
            solve_linear(**CASE, out=bad, resume=True)

    # garbage inside the raw data of a dataset: only the checksum can see it
    bad = tmp_path / "garbage-data.h5"
    shutil.copy(path, bad)
    with h5py.File(bad, "r") as f:
        offset = f["kernels/C_w"].id.get_offset()
    with open(bad, "r+b") as fh:
        fh.seek(offset + 800)
        fh.write(b"\x7f" * 64)
    with pytest.raises(FileFormatError, match="checksum"):
        solve_linear(**CASE, out=bad, resume=True)

    # garbage anywhere: a clean error, or the bytes were unused and the content is intact
    rng = np.random.default_rng(0)
    for k, offset in enumerate(rng.integers(0, len(blob) - 64, size=25)):
        bad = tmp_path / f"garbage-{k}.h5"
        bad.write_bytes(blob[:offset] + rng.bytes(64) + blob[offset + 64:])
        back = _load_or_error(bad)
        if back is not None:
            _assert_same_run(back, ref)


class Interrupted(LinearDMFT):
    """The linear DMFT, interrupted (KeyboardInterrupt) at its n-th evaluation of the map."""

    def __init__(self, n):
        super().__init__(LinearModel(CASE["ratio"], CASE["noise"]), TimeGrid.uniform(CASE["t_max"], CASE["steps"]))
        self.n, self.calls = n, 0

    def update(self, kernels):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return super().update(kernels)


@pytest.mark.parametrize("where", ["middle", "confirmation"])
def test_interrupt_inside_the_map_then_resume(reference, tmp_path, where):
    ref, _ = reference
    out = tmp_path / "run.h5"
    options = FixedPointOptions(adaptive_damping=True, checkpoint_every=3)
    n = 8 if where == "middle" else ref.nfev  # the last evaluation is the confirmation step
    with pytest.raises(KeyboardInterrupt):
        iterate(Interrupted(n), options, out=out)
    saved = read_result(out)  # the half-done iteration is undone: its iterate is unevaluated again
    assert saved.status is Status.RUNNING and saved.nit == (n - 1 if where == "middle" else ref.nit - 1)
    _assert_same_run(iterate(Interrupted(0), options, out=out, resume=True), ref)
