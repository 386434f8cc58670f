"""The gradient-flow DMFT on a non-uniform grid (dmft.two_layer.flow) against the exact gradient flow
of linear regression (eps = 0: Marchenko-Pastur closed form)."""
import math

import numpy as np
import pytest

from dmft.marchenko_pastur import losses
from dmft.params import TwoLayerModel
from dmft.solvers.grid import TimeGrid
from dmft.solvers.multistep import coefficients
from dmft.solvers.validation import ParameterError
from dmft.two_layer.flow import FlowProblem

RATIO = 5.5


def _errors(scheme, grid):
    """Largest |error| over tau of the train and test loss at eps = 0 (alpha 1, ratio 5.5, 16 nodes,
    the noise-free twins only: no sampling).  At eps = 0 the student is linear regression and the
    labels u^2/2 act as noise of variance sigma^2 = E[u^4]/4 over the quadrature, with zero signal:
    train = MP_train(sigma) - MP_train(0), test = 3/4 + MP_test(sigma) - MP_test(0) - sigma^2."""
    p = FlowProblem(TwoLayerModel(1.0, RATIO, 0.0), grid, scheme=scheme, nodes=16, samples=0)
    obs = p.solve()
    assert p.message is None
    s2 = float(p.node_weight @ p.u2[p.twins] ** 2 / 4.0)
    tr1, te1 = losses(RATIO, math.sqrt(s2), obs["tau"])
    tr0, te0 = losses(RATIO, 0.0, obs["tau"])
    d_train = np.abs(obs["train_loss"] - (tr1 - tr0))
    d_test = np.abs(obs["test_loss"] - (0.75 + te1 - te0 - s2))
    return obs["tau"], d_train, d_test


@pytest.mark.parametrize("scheme, bound, ratios", [("cn", 3e-4, (3.5, 3.5)),
                                                   pytest.param("bdf2", 1e-3, (2.2, 3.2), marks=pytest.mark.slow)])
def test_flow_converges_to_the_exact_gradient_flow_at_second_order(scheme, bound, ratios):
    # measured (tau <= 20), h = 0.2 -> 0.1: cn 7.7e-4 -> 1.9e-4 (train), 8.5e-4 -> 2.1e-4 (test), ratio 4.1;
    # bdf2 1.2e-3 -> 4.7e-4 (train, its error sits in the first steps: ratio 2.6), 3.1e-3 -> 8.2e-4 (test, 3.8).
    # A first-order scheme halves its error (backward Euler: ratio 1.8).
    coarse = _errors(scheme, TimeGrid.uniform(20.0, 100))
    fine = _errors(scheme, TimeGrid.uniform(20.0, 200))
    for k, r in zip((1, 2), ratios):
        assert max(fine[k]) < bound, (scheme, k, max(fine[k]))
        assert max(coarse[k]) / max(fine[k]) > r, (scheme, k, max(coarse[k]), max(fine[k]))


@pytest.mark.parametrize("scheme", [pytest.param("cn", marks=pytest.mark.slow), "bdf2"])
def test_steps_far_beyond_the_fastest_time_scale_stay_exact(scheme):
    # steps from 0.1 growing by 5 % up to 20 (20 x the largest fit rate 2 (1 + sqrt(1/ratio))^2 = 4.1 is
    # h rate = 80; explicit Euler needs h < 0.49) reach tau = 1000 in 140 points.  Measured: largest error
    # 5.1e-4 (bdf2) / 2.2e-4 (cn); beyond tau = 50, 1.2e-8 (cn) / 8.9e-8 (bdf2), the share of C_b's variance
    # that the Cholesky cut (1e-6 of the largest variance) drops, and below 1e-11 with cholesky_cut 1e-10.
    grid = TimeGrid.graded(1000.0, 0.1, 1.05, 20.0)
    assert grid.T < 150 and np.max(grid.dt) == pytest.approx(20.0)
    tau, d_train, d_test = _errors(scheme, grid)
    late = tau > 50.0
    assert max(d_train.max(), d_test.max()) < 2e-3
    assert max(d_train[late].max(), d_test[late].max()) < 1e-6


def test_graded_grid_and_bdf2_zero_stability():
    grid = TimeGrid.graded(10.0, 0.1, 1.5, 2.0)
    h = grid.dt
    assert grid.t[-1] == 10.0 and h[0] == pytest.approx(0.1) and np.all(h[:-1] <= 2.0 + 1e-12)
    assert np.all(h[1:-1] / h[:-2] <= 1.5 + 1e-12)
    co = coefficients(grid.t, "bdf2")
    assert co.v[1] == pytest.approx(h[0] / 2) and co.w[2] == pytest.approx(h[1] * 2.5 / 4.0)
    with pytest.raises(ParameterError, match="1 \\+ sqrt\\(2\\)"):
        coefficients([0.0, 0.1, 0.5], "bdf2")
    with pytest.raises(ParameterError, match="growth"):
        TimeGrid.graded(10.0, 0.1, 3.0, 2.0)


@pytest.mark.slow
def test_adaptive_flow_agrees_with_the_extrapolated_gradient_descent_dmft():
    # c1 (alpha 1, eps 0.02, ratio 5.5), tau <= 60, 12 x 16 sites, seeds 0-3: the adaptive flow solve
    # (bdf2, tol 1e-3, about 45 points) against the h -> 0 Richardson extrapolation 2 L(0.2) - L(0.4) of
    # the gradient-descent DMFT (each the mean of 4 sampling seeds).  Measured over tau in [2, 120]: largest
    # |difference| 3.1e-3 (train) and 2.6e-3 (test), at most 1.7 combined standard errors.  Bound: 3 SE plus
    # 5e-4 for the extrapolation's own error (at tau < 2 the h = 0.4 grid does not resolve the fit modes).
    import dmft

    case = dict(alpha=1.0, ratio=5.5, eps=0.02)
    runs = []
    for seed in range(4):
        p = FlowProblem(TwoLayerModel(**case), None, "bdf2", t_max=60.0, tol=1e-3, nodes=12, samples=16, seed=seed)
        runs.append(p.solve())
        assert p.message is None and p.T_used < 80
    tau = runs[0]["tau"]
    euler = {h: dmft.solve(**case, dt=h, t_max=60.0, nodes=12, samples=16, replicas=4) for h in (0.4, 0.2)}
    late = tau >= 2.0
    for name in ("train_loss", "test_loss"):
        flow = np.array([r[name] for r in runs])
        se_flow = flow.std(axis=0, ddof=1) / 2.0

        def at(h, what):
            res = euler[h]
            return np.interp(tau, res.observables["tau"], what(res))

        ref = 2.0 * at(0.2, lambda r: r.observables[name]) - at(0.4, lambda r: r.observables[name])
        se = np.sqrt(se_flow**2 + 4.0 * at(0.2, lambda r: r.errors["mc"][name]) ** 2
                     + at(0.4, lambda r: r.errors["mc"][name]) ** 2)
        d = np.abs(flow.mean(axis=0) - ref)
        assert np.all(d[late] < 3.0 * se[late] + 5e-4), (name, np.max(d[late] - 3.0 * se[late]))


def test_solve_on_an_adaptive_grid(tmp_path):
    # dmft.solve(grid="adaptive"): the first sampling replica chooses the grid, the others run on it; the
    # curves are their mean on that grid, and the file holds it
    import dmft

    out = tmp_path / "flow.h5"
    res = dmft.solve(alpha=1.0, ratio=5.5, eps=0.02, t_max=20.0, grid="adaptive", nodes=4, samples=4, replicas=3,
                     out=out)
    tau = res.observables["tau"]
    assert res.success and "adaptive grid" in res.message and tau[-1] == 20.0
    assert np.all(np.diff(tau) > 0) and np.diff(tau)[-1] > 10 * np.diff(tau)[0]  # steps grow
    assert int(res.diagnostics["grid_points"]) == tau.size and res.sampling_runs["train_loss"].shape == (3, tau.size)
    np.testing.assert_allclose(res.observables["train_loss"], res.sampling_runs["train_loss"].mean(axis=0), rtol=1e-12)
    assert res.final_residual < 1e-6  # the largest change left in a row corrector (4 x 4 sites: 1.3e-7)
    back = dmft.load(out)
    assert back.parameters["grid"] == "adaptive" and np.array_equal(back.observables["tau"], tau)
    with pytest.raises(ParameterError, match="adaptive"):
        dmft.solve(alpha=1.0, ratio=5.5, t_max=5.0, grid="adaptive", checkpoint_every=2, nodes=2, samples=2)
    with pytest.raises(ParameterError, match="finite_size"):
        dmft.solve(alpha=1.0, ratio=5.5, t_max=5.0, grid="adaptive", finite_size=True)


@pytest.mark.slow
def test_adaptive_grid_error_follows_rtol_and_its_length_grows_like_log_t_max():
    # eps = 0 against the exact flow (alpha 1, ratio 5.5), bdf2 on the adaptive grid.  Measured: largest error
    # 2.2e-3 / 7.4e-4 / 1.9e-4 at rtol 1e-2 / 1e-3 / 1e-4 (about rtol^0.55), the same to tau = 1000 and 10000;
    # 42 / 58 / 91 points to tau = 1000 and 10 or 11 more to tau = 10000 (the per-site state is 3 B T^2 floats).
    errors, points = {}, {}
    for rtol in (1e-2, 1e-3):
        for t_max in (1000.0, 10000.0):
            p = FlowProblem(TwoLayerModel(1.0, RATIO, 0.0), None, "bdf2", t_max=t_max, tol=rtol, nodes=16, samples=0)
            obs = p.solve()
            s2 = float(p.node_weight @ p.u2[p.twins] ** 2 / 4.0)
            tr1, te1 = losses(RATIO, math.sqrt(s2), obs["tau"])
            tr0, te0 = losses(RATIO, 0.0, obs["tau"])
            errors[rtol, t_max] = max(np.abs(obs["train_loss"] - (tr1 - tr0)).max(),
                                      np.abs(obs["test_loss"] - (0.75 + te1 - te0 - s2)).max())
            points[rtol, t_max] = p.T_used
    assert errors[1e-2, 1000.0] < 3e-3 and errors[1e-3, 1000.0] < 1e-3
    assert errors[1e-3, 1000.0] < 0.5 * errors[1e-2, 1000.0]
    for rtol in (1e-2, 1e-3):
        assert points[rtol, 10000.0] <= points[rtol, 1000.0] + 15, points
        assert errors[rtol, 10000.0] < 1.1 * errors[rtol, 1000.0]
