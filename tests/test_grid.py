"""Time grids, trapezoid weights and the Numba kernels of dmft.solvers.volterra, against closed forms."""
import numba
import numpy as np
import pytest

from dmft.params import ParameterError
from solvers import volterra as V
from dmft.solvers.grid import TimeGrid, require_memory


def _grids(t_max, steps):
    return [TimeGrid.uniform(t_max, steps), TimeGrid.geometric(t_max, steps)]


def _order(errors, steps):
    e, n = np.asarray(errors), np.asarray(steps, dtype=float)
    return np.log(e[:-1] / e[1:]) / np.log(n[1:] / n[:-1])


# ----------------------------------------------------------------------------- grids
def test_uniform_grid():
    g = TimeGrid.uniform(10.0, 500)
    assert g.T == 501 and g.steps == 500 and g.t[0] == 0 and g.t[-1] == 10.0
    np.testing.assert_allclose(g.dt, 0.02, rtol=1e-12)
    assert g.parameters() == {"grid": "uniform", "t_max": 10.0, "steps": 500, "t_first": None}
    with pytest.raises(ValueError):
        g.t[1] = 3.0  # read-only


def test_geometric_grid():
    g = TimeGrid.geometric(10.0, 400, t_first=0.005)
    assert g.T == 401 and g.t[0] == 0 and g.t[-1] == 10.0
    np.testing.assert_allclose(g.dt[0], 0.005, rtol=1e-10)
    ratios = g.dt[1:] / g.dt[:-1]
    np.testing.assert_allclose(ratios[:-1], ratios[0], rtol=1e-9)  # geometric (last step absorbs round-off)
    assert ratios[0] > 1  # dense early, sparse late
    default = TimeGrid.geometric(10.0, 400)
    np.testing.assert_allclose(default.dt[0], 10.0 / 400 / 2, rtol=1e-12)
    # t_first = t_max/steps is the uniform grid
    np.testing.assert_allclose(TimeGrid.geometric(1.0, 10, 0.1).t, np.linspace(0, 1, 11), atol=1e-14)


@pytest.mark.parametrize("bad", [dict(t_max=0, steps=10), dict(t_max=-1, steps=10), dict(t_max=1, steps=0),
                                 dict(t_max=float("nan"), steps=10), dict(t_max=1, steps=2.5),
                                 dict(t_max=float("inf"), steps=10)])
def test_grid_validation(bad):
    for make in (TimeGrid.uniform, TimeGrid.geometric):
        with pytest.raises(ParameterError, match="invalid (t_max|steps)"):
            make(**bad)
    with pytest.raises(ParameterError, match="t_first"):
        TimeGrid.geometric(1.0, 10, t_first=0.2)  # > t_max/steps: would be dense late
    with pytest.raises(ParameterError, match="at least 2 points"):
        TimeGrid(np.array([0.0]))


def test_memory_limit_names_the_largest_grid():
    with pytest.raises(ParameterError, match=r"T <= \d+"):
        require_memory(10**6, 40)
    assert require_memory(101, 40) == 40 * 8 * 101**2


@pytest.mark.parametrize("grid", _grids(2.0, 8), ids=["uniform", "geometric"])
def test_weights_trapezoid(grid):
    W = grid.weights()
    t = grid.t
    assert np.allclose(W, np.tril(W)) and np.all(W[0] == 0)
    np.testing.assert_allclose(W.sum(axis=1), t, rtol=1e-13)  # exact for f = 1
    np.testing.assert_allclose(W @ (3 * t - 1), 1.5 * t**2 - t, atol=1e-13)  # exact for linear f


def test_weights_second_order():
    for make in (TimeGrid.uniform, TimeGrid.geometric):
        errors, steps = [], [20, 40, 80]
        for n in steps:
            g = make(3.0, n)
            errors.append(np.max(np.abs(g.weights() @ np.cos(g.t) - np.sin(g.t))))
        assert np.all(_order(errors, steps) > 1.9)


# ----------------------------------------------------------------------------- Volterra kernels
def test_volterra_integral_closed_form():
    g = TimeGrid.geometric(2.0, 200)
    t, W = g.t, g.weights()
    K = np.exp(-(t[:, None] - t[None, :]))  # int_0^t e^{-(t-s)} cos(s) ds
    y = V.volterra_integral(K, np.cos(t), W)
    exact = 0.5 * (np.cos(t) + np.sin(t) - np.exp(-t))
    assert np.max(np.abs(y - exact)) < 5e-5  # ~ t_max h^2 max|f''| / 12
    y2 = V.volterra_integral(K, np.stack([np.cos(t), 2 * np.cos(t)]), W)
    np.testing.assert_allclose(y2[1], 2 * y, rtol=1e-12)


@pytest.mark.parametrize("make", [TimeGrid.uniform, TimeGrid.geometric], ids=["uniform", "geometric"])
def test_volterra_solve_constant_kernel_is_exponential(make):
    # x = 1 + c int_0^t x  =>  x = e^{c t}; error O(h^2)
    errors, steps, c = [], [50, 100, 200], -1.3
    for n in steps:
        g = make(3.0, n)
        T = g.T
        x = V.volterra_solve(np.ones(T), np.full((T, T), c), g.weights())
        errors.append(np.max(np.abs(x - np.exp(c * g.t))))
    assert errors[-1] < 3e-5
    assert np.all(_order(errors, steps) > 1.9)


def test_resolvent_constant_kernel():
    # Gamma = K - K * Gamma with K = k  =>  Gamma(t, t') = k e^{-k (t - t')}
    g = TimeGrid.uniform(3.0, 200)
    t, T, k = g.t, g.T, 0.9
    Kc = np.tril(np.full((T, T), k))
    gamma = V.resolvent(Kc, -Kc, g.weights())
    lag = t[:, None] - t[None, :]
    exact = np.where(lag >= 0, k * np.exp(-k * np.maximum(lag, 0)), 0.0)
    assert np.max(np.abs(gamma - exact)) < 1e-5
    assert np.all(np.triu(gamma, 1) == 0)


@pytest.mark.parametrize("make", [TimeGrid.uniform, TimeGrid.geometric], ids=["uniform", "geometric"])
def test_response_function_closed_form(make):
    # d_t R = -a R + b int_{t'}^t R(s, t') ds, R(t', t') = 1: f'' = -a f' + b f, f(0) = 1, f'(0) = -a
    a, b = 2.0, 0.7
    r1, r2 = (-a + np.sqrt(a * a + 4 * b)) / 2, (-a - np.sqrt(a * a + 4 * b)) / 2
    B = (-a - r1) / (r2 - r1)
    errors, steps = [], [50, 100, 200]
    for n in steps:
        g = make(3.0, n)
        R = V.response_function(np.full((g.T, g.T), b), g.weights(), a=a)
        lag = g.t[:, None] - g.t[None, :]
        exact = np.where(lag >= 0, (1 - B) * np.exp(r1 * lag) + B * np.exp(r2 * lag), 0.0)
        errors.append(np.max(np.abs(R - exact)))
    assert errors[-1] < 1e-4
    assert np.all(_order(errors, steps) > 1.9)


def _driven_covariance(t, a, w, c0):
    """Exact covariance of x(t) = e^{-a t} x0 + int_0^t e^{-a(t-s)} eta(s) ds, Cov(eta) = cos(w(s-s'))."""
    f = (np.exp(1j * w * t) - np.exp(-a * t)) / (a + 1j * w)
    return np.real(f[:, None] * np.conj(f[None, :])) + c0 * np.exp(-a * (t[:, None] + t[None, :]))


def test_propagate_covariance_closed_form():
    a, w, c0 = 1.5, 2.0, 0.3
    errors, steps = [], [50, 100, 200]
    for n in steps:
        g = TimeGrid.geometric(4.0, n)
        t = g.t
        lag = t[:, None] - t[None, :]
        R = np.where(lag >= 0, np.exp(-a * np.maximum(lag, 0)), 0.0)
        C = V.propagate_covariance(R, np.cos(w * lag), g.weights(), r0=np.exp(-a * t), c0=c0)
        assert np.array_equal(C, C.T)
        errors.append(np.max(np.abs(C - _driven_covariance(t, a, w, c0))))
    assert errors[-1] < 1e-4
    assert np.all(_order(errors, steps) > 1.9)


def test_lower_matmul():
    rng = np.random.default_rng(1)
    L, B = rng.standard_normal((37, 37)), rng.standard_normal((37, 5))
    np.testing.assert_allclose(V.lower_matmul(L, B), np.tril(L) @ B, atol=1e-13)


# ----------------------------------------------------------------------------- sampling
def test_causal_cholesky_semidefinite():
    t = TimeGrid.uniform(4.0, 150).t
    C = _driven_covariance(t, 1.5, 2.0, 0.3)  # rank 3: most pivots must be cut
    L, n_cut = V.causal_cholesky(C)
    assert n_cut > 100
    assert np.max(np.abs(L @ L.T - C)) < 1e-8 * np.max(np.diag(C))
    # causal: the factor of a leading block is the leading block of the factor
    L60, _ = V.causal_cholesky(C[:60, :60])
    assert np.array_equal(L60, L[:60, :60])
    # incremental extension reproduces the full factor
    L_inc = np.zeros_like(C)
    L_inc[:60, :60] = L60
    V.cholesky_extend(L_inc, C, 60, 1e-10 * np.max(np.diag(C)))
    assert np.array_equal(L_inc, L)


def test_gaussian_paths_covariance_and_reproducibility():
    g = TimeGrid.uniform(2.0, 40)
    t = g.t
    C = np.minimum(t[:, None], t[None, :]) + 0.5 * np.exp(-np.abs(t[:, None] - t[None, :]))  # full rank
    n = 40000
    x = V.gaussian_paths(C, n, seed=7)
    assert x.shape == (n, g.T)
    C_hat = x.T @ x / n
    se = np.sqrt((np.outer(np.diag(C), np.diag(C)) + C**2) / n)  # std. error of a sample covariance
    assert np.max(np.abs(C_hat - C) / se) < 5.0
    # same seed -> same paths; independent of the number of threads
    assert np.array_equal(x[:100], V.gaussian_paths(C, n, seed=7)[:100])
    if numba.config.NUMBA_NUM_THREADS > 1:
        old = numba.get_num_threads()
        try:
            numba.set_num_threads(1)
            x1 = V.gaussian_paths(C, 500, seed=3)
        finally:
            numba.set_num_threads(old)
        assert np.array_equal(x1, V.gaussian_paths(C, 500, seed=3))
    # antithetic pairs
    xa = V.gaussian_paths(C, 10, seed=1, antithetic=True)
    np.testing.assert_array_equal(xa[:5], -xa[5:])


def test_gaussian_paths_degenerate_covariance():
    t = TimeGrid.uniform(4.0, 100).t
    C = _driven_covariance(t, 1.5, 2.0, 0.3)
    x = V.gaussian_paths(C, 20000, seed=0)
    assert np.all(np.isfinite(x))
    se = np.sqrt((np.outer(np.diag(C), np.diag(C)) + C**2) / 20000)
    assert np.max(np.abs(x.T @ x / 20000 - C) / se) < 5.0
