"""The engine validated on a model with a known answer: the DMFT of gradient-flow linear regression
against the Marchenko–Pastur closed form, a direct finite-D simulation, and the CLI."""
import numpy as np
import pytest
from click.testing import CliRunner
from scipy.integrate import quad

from dmft.cli import main
from dmft.linear import LinearDMFT, simulate_linear, solve_linear
from dmft.marchenko_pastur import losses, response
from dmft.params import LinearModel, ParameterError
from dmft.solvers.fixed_point import FixedPointOptions, iterate
from dmft.solvers.grid import TimeGrid
from dmft.solvers.checkpoint import read_result

CASES = [(ratio, noise) for ratio in (0.5, 1.0, 2.0, 4.0) for noise in (0.0, 0.5)]
# T >= 500 and the error below 1e-3 everywhere; the hardest case (ratio 0.5, noise 0.5, late times)
# is 4.6e-4 (uniform, T = 801) and 5.0e-4 (geometric, T = 1001), see test_observed_order.
GRIDS = {"uniform": dict(t_max=10.0, steps=800, grid="uniform"),
         "geometric": dict(t_max=10.0, steps=1000, grid="geometric")}
_SOLVED: dict = {}


def _solve(ratio, noise, grid):
    key = (ratio, noise, grid)
    if key not in _SOLVED:
        _SOLVED[key] = solve_linear(ratio, noise, **GRIDS[grid])
    return _SOLVED[key]


# ----------------------------------------------------------------------------- closed form
def test_marchenko_pastur_closed_form_limits():
    for ratio in (0.5, 1.0, 2.0, 4.0):
        lam = 1 / ratio
        for noise in (0.0, 0.5):
            train, test = losses(ratio, noise, [0.0, 1e4])
            assert train[0] == pytest.approx(1 + noise**2, abs=1e-12)
            assert test[0] == pytest.approx(1 + noise**2, abs=1e-12)
            if ratio > 1:  # least squares: train sigma^2 (1 - lambda), test sigma^2 (1 + lambda/(1 - lambda))
                assert train[1] == pytest.approx(noise**2 * (1 - lam), abs=1e-10)
                assert test[1] == pytest.approx(noise**2 * (1 + lam / (1 - lam)), abs=1e-10)
            if ratio < 1:  # interpolation; the null space of X keeps a fraction 1 - ratio of beta
                assert train[1] == pytest.approx(0.0, abs=1e-10)
                if noise == 0:
                    assert test[1] == pytest.approx(1 - ratio, abs=1e-10)


def test_marchenko_pastur_quadrature_against_scipy_quad():
    for ratio, tau in [(0.5, 0.3), (1.0, 2.0), (4.0, 7.0)]:
        lam = 1 / ratio
        lo, hi = (1 - np.sqrt(lam)) ** 2, (1 + np.sqrt(lam)) ** 2

        def rho(s):
            return np.sqrt(max((hi - s) * (s - lo), 0.0)) / (2 * np.pi * lam * s)

        atom = max(0.0, 1 - ratio)
        e4 = quad(lambda s: rho(s) * np.exp(-4 * s * tau), lo, hi, epsabs=1e-13, limit=200)[0]
        s_e4 = quad(lambda s: rho(s) * s * np.exp(-4 * s * tau), lo, hi, epsabs=1e-13, limit=200)[0]
        nz = quad(lambda s: rho(s) * (1 - np.exp(-2 * s * tau)) ** 2 / s, lo, hi, epsabs=1e-13, limit=200)[0]
        train, test = losses(ratio, 0.5, tau)
        assert test == pytest.approx(atom + e4 + lam * 0.25 * nz + 0.25, abs=1e-10)
        assert train == pytest.approx(s_e4 + 0.25 * (1 - min(1, lam) + lam * e4), abs=1e-10)


# ----------------------------------------------------------------------------- DMFT vs closed form
# one case in the fast subset, every case in the full suite
@pytest.mark.parametrize("grid", [g if g == "uniform" else pytest.param(g, marks=pytest.mark.slow) for g in sorted(GRIDS)])
@pytest.mark.parametrize("ratio,noise", [c if c == (2.0, 0.5) else pytest.param(*c, marks=pytest.mark.slow)
                                         for c in CASES])
def test_dmft_matches_marchenko_pastur(ratio, noise, grid):
    res = _solve(ratio, noise, grid)
    assert res.success and res.confirmation_residual <= 1e-8
    assert res.observables["tau"].size >= 500
    train, test = losses(ratio, noise, res.observables["tau"])
    err_train = np.max(np.abs(res.observables["train_loss"] - train))
    err_test = np.max(np.abs(res.observables["test_loss"] - test))
    print(f"\n{grid} ratio={ratio} noise={noise}: T={res.observables['tau'].size} nit={res.nit} "
          f"max|train err|={err_train:.2e} max|test err|={err_test:.2e}")
    assert err_train < 1e-3 and err_test < 1e-3
    # the response kernel itself: R_w(t, 0) = int dmu e^{-2 s t}
    R = res.kernels["R_w"]
    assert np.max(np.abs(R[:, 0] - response(ratio, res.observables["tau"]))) < 1e-3
    assert np.all(np.diag(R) == 1.0) and np.all(np.triu(R, 1) == 0)
    assert np.array_equal(res.kernels["C_w"], res.kernels["C_w"].T)


@pytest.mark.parametrize("grid", ["uniform", "geometric"])
def test_observed_order_is_two(grid):
    """Error vs the closed form at steps n, 2n, 4n: trapezoid, so order ~2 (asserted > 1.5)."""
    steps = [100, 200, 400]
    errors = []
    for n in steps:
        res = solve_linear(0.5, 0.5, t_max=10.0, steps=n, grid=grid)
        train, test = losses(0.5, 0.5, res.observables["tau"])
        errors.append(max(np.max(np.abs(res.observables["train_loss"] - train)),
                          np.max(np.abs(res.observables["test_loss"] - test))))
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    print(f"\n{grid}: errors {['%.2e' % e for e in errors]} observed orders {np.round(orders, 3)}")
    assert np.all(orders > 1.5)


def test_ratio_to_infinity_limit():
    """ratio -> inf: Gamma -> 0, R_w = e^{-2 t}, test = e^{-4 t} + sigma^2."""
    res = solve_linear(1e6, 0.3, t_max=3.0, steps=300)
    t = res.observables["tau"]
    assert np.max(np.abs(res.kernels["R_w"][:, 0] - np.exp(-2 * t))) < 1e-4
    assert np.max(np.abs(res.observables["test_loss"] - (np.exp(-4 * t) + 0.09))) < 1e-4


def test_derived_kernels_and_initial_values():
    res = solve_linear(2.0, 0.5, t_max=5.0, steps=100)
    assert set(res.derived_kernels) == {"Gamma", "C_r"}
    gamma = res.derived_kernels["Gamma"]
    assert np.all(np.triu(gamma, 1) == 0) and np.allclose(np.diag(gamma), 2 / 2.0)  # Gamma(t,t) = 2 lambda
    assert res.observables["train_loss"][0] == pytest.approx(1.25, abs=1e-14)
    assert res.observables["test_loss"][0] == pytest.approx(1.25, abs=1e-14)
    np.testing.assert_allclose(res.observables["weight_error"] + 0.25, res.observables["test_loss"])


# ----------------------------------------------------------------------------- simulation
@pytest.mark.slow
def test_direct_simulation_agrees():
    """Exact gradient flow at D = 1000, 8 seeds, against MP and the DMFT.

    Tolerance 6 SE + 2/D: SE is the seed standard error (7 degrees of freedom: P(|t_7| > 6) = 5e-4 per
    comparison, 40 correlated comparisons), 2/D allows the O(1/D) finite-size corrections of the
    spectral averages; the seeds are fixed, so the test is deterministic.
    """
    D, seeds = 1000, range(8)
    tau = np.array([0.1, 0.5, 1.0, 3.0, 10.0])
    worst = 0.0
    for ratio in (0.5, 1.0, 2.0, 4.0):
        sim = simulate_linear(ratio, 0.5, D, tau, seeds=seeds)
        mp_train, mp_test = losses(ratio, 0.5, tau)
        dmft = _solve(ratio, 0.5, "uniform").observables
        for name, mp in (("train_loss", mp_train), ("test_loss", mp_test)):
            mean = sim[name].mean(axis=0)
            se = sim[name].std(axis=0, ddof=1) / np.sqrt(len(seeds))
            tol = 6 * se + 2.0 / D
            dmft_at = np.interp(tau, dmft["tau"], dmft[name])
            assert np.all(np.abs(mean - mp) < tol), (ratio, name, mean - mp, se)
            assert np.all(np.abs(mean - dmft_at) < tol + 1e-3), (ratio, name, mean - dmft_at, se)
            worst = max(worst, float(np.max(np.abs(mean - mp) / tol)))
    print(f"\nsimulation vs MP: worst |mean - MP| / tolerance = {worst:.2f}")


# ----------------------------------------------------------------------------- interfaces
def test_solve_linear_validates_inputs():
    for kwargs, name in [(dict(ratio=0), "ratio"), (dict(ratio=2, noise=-1), "noise"), (dict(ratio=2, steps=0), "steps"),
                         (dict(ratio=2, t_max=0), "t_max"), (dict(ratio=2, grid="log"), "grid"),
                         (dict(ratio=2, damping=1.5), "damping"), (dict(ratio=2, accel="fast"), "accel"),
                         (dict(ratio=2, t_first=0.01), "t_first")]:
        with pytest.raises(ParameterError, match=f"invalid {name}"):
            solve_linear(**kwargs)
    with pytest.raises(ParameterError, match=r"8 T\^2 bytes each.*allowed is T <= \d+"):
        solve_linear(2.0, steps=20_000)  # within the range of steps, beyond any memory
    with pytest.raises(ParameterError, match=r"invalid steps=200000: allowed range is an integer in \[1, 20000\]"):
        solve_linear(2.0, steps=200_000)


def test_problem_object_with_iterate_directly():
    problem = LinearDMFT(LinearModel(2.0, 0.0), TimeGrid.geometric(5.0, 80))
    assert problem.parameters()["grid"] == "geometric" and problem.parameters()["t_first"] > 0
    res = iterate(problem, FixedPointOptions(accel="none", damping=0.2))
    assert res.success and "damping=0.2" in res.method


def test_cli_solve_and_resume(tmp_path):
    runner = CliRunner()
    out = tmp_path / "f.h5"
    args = ["solve", "--model", "linear", "--ratio", "2", "--noise", "0.5", "--t-max", "10", "--steps", "200",
            "--out", str(out), "--quiet"]
    r = runner.invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "converged" in r.output and out.exists()
    full = read_result(out)
    train, test = losses(2.0, 0.5, full.observables["tau"])
    assert np.max(np.abs(full.observables["test_loss"] - test)) < 1e-3

    r = runner.invoke(main, args + ["--resume"])  # a finished run: returned as stored
    assert r.exit_code == 0 and "converged" in r.output

    part = tmp_path / "part.h5"  # interrupted by --max-iter, then resumed: identical to the full run
    r = runner.invoke(main, [a if a != str(out) else str(part) for a in args] + ["--max-iter", "4"])
    assert r.exit_code == 1 and "maximum number of iterations" in r.output
    r = runner.invoke(main, [a if a != str(out) else str(part) for a in args] + ["--resume"])
    assert r.exit_code == 0, r.output
    resumed = read_result(part)
    assert all(np.array_equal(resumed.kernels[k], full.kernels[k]) for k in full.kernels)

    r = runner.invoke(main, [a if a != "2" else "3" for a in args] + ["--resume"])
    assert r.exit_code == 1 and "ratio: file 2.0, now 3.0" in r.output

    bad = tmp_path / "bad.h5"
    bad.write_bytes(out.read_bytes()[:5000])
    r = runner.invoke(main, [a if a != str(out) else str(bad) for a in args] + ["--resume"])
    assert r.exit_code == 1 and "Error:" in r.output and "Traceback" not in r.output
