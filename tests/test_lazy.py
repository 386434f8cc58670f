"""Tests of the lazy (NTK kernel-flow) reference, dmft.lazy."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.integrate

from dmft.lazy import kernel_flow, ntk_kernel, quadratic_population_loss
from dmft.params import ParameterError
from dmft.simulator import ReducedNetwork, _seed_streams, make_problem, simulate


def _problem(D=20, ratio=2.0, noise=0.1, seed=0):
    return make_problem(D, int(round(ratio * D)), noise, np.random.default_rng(seed))


def test_quadratic_population_loss_monte_carlo():
    """E_x[(x^T B x - g.x + c)^2], x ~ N(0, I/D), for a non-symmetric B and a constant, vs 4e5 samples."""
    rng = np.random.default_rng(1)
    D = 8
    B = rng.standard_normal((D, D))
    g = rng.standard_normal(D)
    c = 0.7
    x = rng.standard_normal((400_000, D)) / math.sqrt(D)
    v = (np.einsum("ij,jk,ik->i", x, B, x) - x @ g + c) ** 2
    se = v.std(ddof=1) / math.sqrt(v.size)
    assert abs(quadratic_population_loss(B, g, c) - v.mean()) < 4 * se


def test_euler_map_equals_explicit_iteration():
    """Discrete version: Delta(n+1) = (1 - 2 h (D/P) K) Delta(n), f_n(x) = K(x, X) c_n."""
    pr = _problem()
    P, D = pr.X.shape
    h, n_steps = 0.3, 25
    K = ntk_kernel(pr.X, eps=0.4)
    delta = pr.y.copy()
    c = np.zeros(P)
    for _ in range(n_steps):
        c += 2 * h * D / P * delta
        delta = delta - 2 * h * D / P * K @ delta
    res = kernel_flow(pr.X, pr.y, 0.4, [0.0, h * n_steps], beta=pr.beta, dt=h)
    np.testing.assert_allclose(res.residual[-1], delta, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res.coefficients[-1], c, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(pr.y - K @ res.coefficients[-1], delta, atol=1e-10)
    assert res.train_loss[0] == pytest.approx(np.mean(pr.y**2))
    assert res.train_loss[-1] == pytest.approx(np.mean(delta**2), rel=1e-10)
    assert res.test_loss[0] == pytest.approx(0.75, rel=1e-12)


def test_flow_equals_ode_and_is_the_small_step_limit():
    pr = _problem(D=12)
    P, D = pr.X.shape
    K = ntk_kernel(pr.X, eps=0.5)
    tau = np.array([0.0, 0.5, 2.0, 6.0])
    sol = scipy.integrate.solve_ivp(lambda t, d: -2 * D / P * K @ d, (0, tau[-1]), pr.y, t_eval=tau,
                                    rtol=1e-11, atol=1e-13)
    flow = kernel_flow(pr.X, pr.y, 0.5, tau, beta=pr.beta)
    np.testing.assert_allclose(flow.residual, sol.y.T, atol=1e-8)
    errs = []
    for h in (0.1, 0.05, 0.025):
        euler = kernel_flow(pr.X, pr.y, 0.5, tau, beta=pr.beta, dt=h)
        errs.append(np.max(np.abs(euler.test_loss - flow.test_loss)))
    assert errs[1] < 0.6 * errs[0] and errs[2] < 0.6 * errs[1]  # first order in h


def test_lazy_test_loss_matches_direct_and_monte_carlo():
    pr = _problem(D=15, ratio=3.0, noise=0.0, seed=2)
    res = kernel_flow(pr.X, pr.y, 0.6, [3.0], beta=pr.beta)
    c = res.coefficients[-1]
    # direct D x D quadratic form: f = g.x + x^T Q x
    Q = 0.6**2 * pr.X.T @ (c[:, None] * pr.X)
    B = 0.5 * np.outer(pr.beta, pr.beta) - Q
    direct = quadratic_population_loss(B, pr.X.T @ c)
    assert res.test_loss[-1] == pytest.approx(direct, rel=1e-10)
    rng = np.random.default_rng(9)
    x = rng.standard_normal((100_000, 15)) / math.sqrt(15)
    v = (res.predict(x) - pr.clean_target(x)) ** 2
    se = v.std(ddof=1) / math.sqrt(v.size)
    assert abs(res.test_loss[-1] - v.mean()) < 4 * se
    assert res.test_loss[-1] < 0.7  # learned something


def test_rank_deficient_kernel_eps_zero():
    """eps = 0: K = X X^T has rank D < P; the flow is linear regression, train loss -> least-squares residual."""
    pr = _problem(D=10, ratio=3.0, noise=0.3)
    res = kernel_flow(pr.X, pr.y, 0.0, [0.0, 1e4], beta=pr.beta)
    coef, *_ = np.linalg.lstsq(pr.X, pr.y, rcond=None)
    ls = np.mean((pr.y - pr.X @ coef) ** 2)
    assert np.all(np.isfinite(res.coefficients))
    assert res.train_loss[-1] == pytest.approx(ls, rel=1e-8)
    euler = kernel_flow(pr.X, pr.y, 0.0, [0.0, 1e4], beta=pr.beta, dt=0.2)
    assert euler.train_loss[-1] == pytest.approx(ls, rel=1e-8)


def test_large_alpha_simulation_converges_to_kernel_flow():
    """The infinite-width network at alpha = 10, 100, 1000 (same Euler step) approaches the lazy
    Euler map on the same data with error ~ 1/alpha."""
    h = 0.2
    taus = np.arange(0, 41) * h
    errors = []
    for alpha in (10.0, 100.0, 1000.0):
        r = simulate(alpha=alpha, ratio=2.0, eps=0.5, dim=40, dt=h, t_max=taus[-1], record_tau=taus,
                     lazy_reference=True)
        lazy = r.lazy["observables"]
        errors.append(max(np.max(np.abs(r.observables[k] - lazy[k])) for k in ("train_loss", "test_loss")))
    assert errors[1] < 0.3 * errors[0] and errors[2] < 0.3 * errors[1], errors
    assert errors[2] < 1e-3, errors


def test_simulate_lazy_reference_is_kernel_flow_on_same_data():
    r = simulate(alpha=1.0, ratio=2.0, eps=0.3, noise=0.2, dim=15, dt=0.25, t_max=5.0, seeds=2, seed=3,
                 n_records=6, lazy_reference=True)
    for k in range(2):
        problem = make_problem(15, 30, 0.2, _seed_streams(3 + k)[0])
        kf = kernel_flow(problem.X, problem.y, 0.3, r.tau, beta=problem.beta, dt=0.25)
        np.testing.assert_array_equal(r.lazy["per_seed"]["train_loss"][k], kf.train_loss)
        np.testing.assert_array_equal(r.lazy["per_seed"]["test_loss"][k], kf.test_loss)
        # and it is the data the network was trained on (same initial train loss)
        assert r.per_seed["train_loss"][k][0] == pytest.approx(kf.train_loss[0], rel=1e-12)
    np.testing.assert_allclose(r.lazy["observables"]["test_loss"], r.lazy["per_seed"]["test_loss"].mean(axis=0))
    np.testing.assert_allclose(r.lazy["std"]["test_loss"], r.lazy["per_seed"]["test_loss"].std(axis=0, ddof=1))


def test_kernel_is_the_networks_initial_ntk():
    """One tiny step of the infinite-width network changes f by 2 h (D/P) K Delta with the kernel above."""
    pr = _problem(D=10, ratio=2.0, seed=4)
    P, D = pr.X.shape
    h = 1e-7
    net = ReducedNetwork(pr, alpha=3.0, eps=0.7, eta=h * D)
    f0 = net.outputs().copy()
    net.step()
    df = net.outputs() - f0
    pred = 2 * h * D / P * ntk_kernel(pr.X, eps=0.7) @ (pr.y - f0)
    np.testing.assert_allclose(df, pred, rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(eps=-1.0), "eps"),
        (dict(tau=[-1.0]), "tau"),
        (dict(tau=[0.1], dt=0.2), "tau"),
        (dict(dt=0.0), "dt"),
        (dict(alpha=-2.0), "alpha"),
        (dict(y=np.zeros(3)), "y"),
        (dict(beta=np.zeros(2)), "beta"),
    ],
)
def test_kernel_flow_bad_inputs(kwargs, name):
    pr = _problem(D=6)
    args = dict(X=pr.X, y=pr.y, eps=0.1, tau=[0.0, 1.0])
    args.update(kwargs)
    with pytest.raises(ParameterError, match=f"invalid {name}"):
        kernel_flow(**args)
