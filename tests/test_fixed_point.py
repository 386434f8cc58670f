"""The generic fixed-point driver: conventions, acceleration, failure modes, callbacks."""
import math

import numpy as np
import pytest

from dmft.linear import LinearDMFT, solve_linear
from dmft.params import LinearModel, ParameterError
from dmft.solvers.fixed_point import Anderson, FixedPointOptions, IterationInfo, iterate
from dmft.solvers.grid import TimeGrid
from dmft.solvers.result import SolverResult, Status


class AffineProblem:
    """F(x) = A x + b with a known fixed point x* = (I - A)^{-1} b."""

    kind = "test-affine"

    def __init__(self, A, b, x0=None):
        self.A, self.b = np.asarray(A, float), np.asarray(b, float)
        self.x0 = np.zeros_like(self.b) if x0 is None else np.asarray(x0, float)
        self.calls = 0

    def parameters(self):
        return {"n": self.b.size, "trace": float(np.trace(self.A))}

    def initial_kernels(self):
        return {"x": self.x0.copy()}

    def update(self, kernels):
        self.calls += 1
        return {"x": self.A @ kernels["x"] + self.b}

    def observables(self, kernels):
        n = self.b.size
        x = kernels["x"]
        return {"tau": np.arange(n, dtype=float), "train_loss": x**2, "test_loss": np.abs(x)}

    @property
    def solution(self):
        return np.linalg.solve(np.eye(self.b.size) - self.A, self.b)


def _contraction(n=30, rho=0.95, seed=0):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = Q @ np.diag(np.linspace(-rho, rho, n)) @ Q.T  # symmetric, spectral radius rho
    return AffineProblem(A, rng.standard_normal(n))


# ----------------------------------------------------------------------------- options
@pytest.mark.parametrize("bad", [dict(damping=1.0), dict(damping=-0.1), dict(damping=float("nan")),
                                 dict(accel="newton"), dict(tol=0), dict(max_iter=0), dict(anderson_memory=0),
                                 dict(checkpoint_every=0), dict(divergence_factor=0.5), dict(max_damping=1.0),
                                 dict(adaptive_damping="yes")])
def test_options_validation(bad):
    name = next(iter(bad))
    with pytest.raises(ParameterError, match=f"invalid {name}="):
        FixedPointOptions(**bad)


def test_damping_convention():
    """K_{k+1} = (1 - d) F(K_k) + d K_k, exactly."""
    p = AffineProblem(0.5 * np.eye(3), np.ones(3), x0=np.array([1.0, 2.0, 3.0]))
    for accel in ("none", "anderson"):  # the first Anderson step has no memory: it IS the damped step
        res = iterate(p, FixedPointOptions(damping=0.3, accel=accel, max_iter=1))
        assert res.status is Status.MAX_ITER and not res.success and res.nit == 1
        fx = 0.5 * p.x0 + 1.0
        np.testing.assert_allclose(res.kernels["x"], 0.7 * fx + 0.3 * p.x0, rtol=1e-15)
        assert res.residuals[0] == np.max(np.abs(fx - p.x0)) / np.max(np.abs(fx))  # undamped, relative


def test_converges_to_the_fixed_point_with_confirmation():
    p = _contraction()
    res = iterate(p, FixedPointOptions(accel="none", tol=1e-10, max_iter=2000))
    assert res.success and res.status is Status.CONVERGED
    assert res.confirmation_residual <= 10 * 1e-10
    np.testing.assert_allclose(res.kernels["x"], p.solution, atol=1e-8)
    assert res.nfev == res.nit + 1  # one confirmation step
    assert "converged" in res.summary() and "final residual" in res.summary()


def test_anderson_beats_plain_iteration():
    p = _contraction(rho=0.95)
    plain = iterate(p, FixedPointOptions(accel="none", tol=1e-10, max_iter=2000))
    anderson = iterate(p, FixedPointOptions(accel="anderson", anderson_memory=10, tol=1e-10, max_iter=2000))
    assert plain.success and anderson.success
    np.testing.assert_allclose(anderson.kernels["x"], plain.kernels["x"], atol=1e-8)
    # plain contracts by 0.95 per step (~ 430 steps); Anderson(10) on a linear map is GMRES-like:
    # eigenvalues of I - A in [0.05, 1.95], rate ~ (sqrt(39) - 1)/(sqrt(39) + 1) = 0.72 -> ~ 70 steps
    assert plain.nit > 300 and anderson.nit < 100


def test_anderson_on_the_linear_dmft():
    """Same fixed point, fewer iterations; pin the costs so that a regression is caught."""
    problem = LinearDMFT(LinearModel(2.0, 0.5), TimeGrid.uniform(10.0, 100))
    plain = iterate(problem, FixedPointOptions(accel="none"))
    anderson = iterate(problem, FixedPointOptions(accel="anderson"))
    assert plain.success and anderson.success
    assert anderson.nit < plain.nit <= 20 and anderson.nit <= 15
    for key in ("R_w", "C_w"):
        np.testing.assert_allclose(anderson.kernels[key], plain.kernels[key], atol=1e-7)


def test_anderson_falls_back_when_ill_conditioned():
    a = Anderson(memory=3)
    x = np.ones(4)
    out = [a.step(x, 2 * x, 1.0) for _ in range(3)]  # identical pairs: dX = dG = 0, singular
    assert all(np.array_equal(o, 2 * x) for o in out)  # plain step
    assert a.n_fallback >= 1 and len(a.dX) == 0


def test_adaptive_damping_rescues_an_oscillating_map():
    # F(x) = -1.2 x + 1: plain iteration diverges (|slope| > 1); damping 0.5 gives slope -0.1
    p = AffineProblem(-1.2 * np.eye(2), np.ones(2))
    plain = iterate(p, FixedPointOptions(accel="none", max_iter=200))
    assert plain.status is Status.DIVERGED
    adaptive = iterate(p, FixedPointOptions(accel="none", adaptive_damping=True, max_iter=200))
    assert adaptive.success
    np.testing.assert_allclose(adaptive.kernels["x"], p.solution, rtol=1e-7)
    assert 0 < adaptive.damping <= 0.9


def test_divergence_is_detected_and_keeps_the_best_iterate():
    p = AffineProblem(3.0 * np.eye(2), np.ones(2))  # x -> 3x + 1 from 0: runs away
    res = iterate(p, FixedPointOptions(accel="none", max_iter=100))
    assert res.status is Status.DIVERGED and not res.success
    assert "diverged" in res.message and "damping" in res.message
    best = int(np.argmin(res.residuals))
    assert res.residuals[best] == min(res.residuals)
    assert res.nit < 20
    assert np.all(np.isfinite(res.kernels["x"]))


def test_absurd_linear_setting_is_refused_clearly():
    """ratio = 0.01: the plain iteration explodes; the solver stops with a clear status."""
    with np.errstate(all="ignore"):
        res = solve_linear(0.01, 0.0, t_max=10.0, steps=60, accel="none", max_iter=100)
    assert res.status in (Status.DIVERGED, Status.NON_FINITE) and not res.success
    assert "iterate" in res.message
    assert all(np.all(np.isfinite(k)) for k in res.kernels.values())


class NaNAfter(AffineProblem):
    def __init__(self, n_good):
        super().__init__(0.5 * np.eye(3), np.ones(3))
        self.n_good = n_good

    def update(self, kernels):
        out = super().update(kernels)
        if self.calls > self.n_good:
            out["x"][1] = np.nan
        return out


def test_non_finite_stops_with_the_last_good_iterate():
    p = NaNAfter(4)
    seen = []
    res = iterate(p, FixedPointOptions(accel="none", tol=1e-14), callback=lambda info: seen.append(info))
    assert res.status is Status.NON_FINITE and not res.success
    assert "non-finite" in res.message and "'x'" in res.message
    assert res.nit == 4 and len(seen) == 4
    # the last good iterate is K_4 = F^4(0) for F(x) = x/2 + 1: 2 - 2^{-3}
    np.testing.assert_allclose(res.kernels["x"], 2 - 2.0**-3)


class Cliff(AffineProblem):
    """F(x) = x + 1e-12 below 1 (tiny residual), but F jumps to 10 at and above 1."""

    def update(self, kernels):
        x = kernels["x"]
        return {"x": np.where(x < 1.0, 1.0, 10.0)}


def test_confirmation_step_catches_a_spurious_fixed_point():
    p = Cliff(np.eye(1), np.zeros(1), x0=np.array([1.0 - 1e-10]))
    res = iterate(p, FixedPointOptions(accel="none"))
    assert res.residuals[-1] <= 1e-8
    assert res.status is Status.NOT_CONFIRMED and not res.success
    assert res.confirmation_residual > 0.5


def test_callback_snapshot_and_stop_iteration():
    p = _contraction()
    infos = []

    def cb(info):
        infos.append(info)
        if info.iteration == 5:
            raise StopIteration

    res = iterate(p, FixedPointOptions(accel="anderson"), callback=cb)
    assert res.status is Status.STOPPED and res.message.startswith("stopped by callback") and not res.success
    assert res.nit == 5 and [i.iteration for i in infos] == [1, 2, 3, 4, 5]
    assert isinstance(infos[0], IterationInfo)
    assert [i.residual for i in infos] == list(res.residuals)
    assert all(i.damping == 0.0 and i.elapsed >= 0 for i in infos)


def test_problem_contract_errors_are_clear():
    class WrongKeys(AffineProblem):
        def update(self, kernels):
            return {"y": kernels["x"]}

    with pytest.raises(ValueError, match="update"):
        iterate(WrongKeys(np.eye(2), np.ones(2)))
    with pytest.raises(ParameterError, match="resume"):
        iterate(_contraction(), resume=True)


def test_progress_bar_runs(capsys):
    res = iterate(_contraction(), FixedPointOptions(), progress=True)
    assert res.success


def test_result_repr_and_status_table():
    res = iterate(_contraction(), FixedPointOptions())
    assert "CONVERGED" in repr(res)
    assert all(isinstance(s.value, str) and len(s.value) > 10 for s in Status)
    assert Status.CONVERGED.success and not Status.MAX_ITER.success
    assert math.isfinite(res.wall_time) and res.method.startswith("anderson")
    assert isinstance(res, SolverResult)
