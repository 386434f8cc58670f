"""Finite-size terms of the two-layer DMFT (``TwoLayerDMFT(finite_size=True)``) and data-set replicas.

What is checked against what:

* switch off: the D -> inf DMFT is untouched (no cross kernels or observables, the same samples);
  switch on at eps = 0 (kappa = a = 0) equals switch off to round-off, and at D = 1e9 the two
  differ by O(1/D) only;
* fixed time: the on - off difference of the losses shrinks as D grows (c1-like parameters,
  D = 200 against D = 3200), and spike_bulk_cross = s C_q falls like s^2 ~ D^-2;
* the causal sweep with the switch on is a fixed point of the map ``update`` (all eight kernels),
  and the map really depends on C_q and R_q;
* the exact trace sum rule of the networks, d tr(A A^T)/D / dtau = 2 kappa E[Delta V]: the D -> inf
  DMFT obeys it to O(h), and the site-covariance rate removes a measured share of the violation
  the finite-size terms bring (what is left is documented in docs/finite-size.md, section 3e);
* readout: ``population_test_loss + cross_test_correction`` against the exact population loss
  ``dmft.lazy.quadratic_population_loss`` of the quadratic predictor for an explicit D x D
  second-moment matrix with a spike-bulk cross part (no sweep involved);
* data-set replicas: at tau = 0 the spread of the train loss over training sets of P points is
  the exact sqrt(Var(u^4/4) / P) = sqrt(6 / P), and halves when P is multiplied by 4;
* bad inputs (``datasets``, ``finite_size``, the CLI with ``--model linear``) are refused.

Each tolerance is stated next to its assertion with the measured value it was chosen from.
"""
import math

import numpy as np
import pytest

from dmft.params import ParameterError, TwoLayerModel
from dmft.two_layer import (
    CROSS_KERNEL_NAMES,
    KERNEL_NAMES,
    TwoLayerDMFT,
    TwoLayerProblem,
    cross_test_correction,
    population_test_loss,
    reaction_residual,
    solve,
)
from dmft.two_layer.finite_size_problem import FiniteSizeProblem

_LOSSES = ("train_loss", "test_loss")


class _WithoutSiteRate(FiniteSizeProblem):
    """The finite-size DMFT without the site-covariance rate on Rhat_z(t,t), to measure its share."""

    def _site_covariance_rate(self, t, st, C_z):
        return 0.0


class _WithoutReaction(FiniteSizeProblem):
    """The finite-size DMFT without the other points' reaction to each site's own bump."""

    def _reaction(self, bump):
        return np.zeros_like(bump)


def _sweep(alpha, ratio, eps, *, finite_size=None, **options):
    """Causal sweep; finite_size=None leaves the option at its default."""
    if finite_size is not None:
        options["finite_size"] = finite_size
    p = TwoLayerProblem(TwoLayerModel(alpha, ratio, eps), TwoLayerDMFT(**options))
    K, msg = p.sweep()
    assert msg is None, msg
    return p, K, p.observables_from(K, p.last_pass["Delta"])


# --------------------------------------------------------------------------- switch off / eps = 0
def test_switch_off_is_the_dinf_dmft():
    grid = dict(dim=50, dt=0.2, t_max=3.0, nodes=8, samples=8)
    p_def, K_def, obs_def = _sweep(0.5, 2.0, 0.3, **grid)  # finite_size not given: the default
    p_off, K_off, obs_off = _sweep(0.5, 2.0, 0.3, finite_size=False, **grid)
    p_on, K_on, obs_on = _sweep(0.5, 2.0, 0.3, finite_size=True, **grid)
    assert set(K_def) == set(K_off) == set(KERNEL_NAMES)
    assert not set(CROSS_KERNEL_NAMES) & set(K_off)
    assert "spike_bulk_cross" not in obs_def and "spike_bulk_cross" not in obs_off
    assert set(K_on) == set(KERNEL_NAMES) | set(CROSS_KERNEL_NAMES) and "spike_bulk_cross" in obs_on
    for name in K_def:
        np.testing.assert_array_equal(K_def[name], K_off[name], err_msg=name)
    for name in ("train_loss", "test_loss", "spike", "bulk", "mean_norm"):
        np.testing.assert_array_equal(obs_def[name], obs_off[name], err_msg=name)
    # the cross-field draws come after the D -> inf ones: switching on keeps the same samples,
    # so on - off differences are paired (the D -> inf part of the sampling error cancels)
    np.testing.assert_array_equal(p_on.gauss, p_off.gauss)
    np.testing.assert_array_equal(p_on.label_noise, p_off.label_noise)
    np.testing.assert_array_equal(p_on.weights, p_off.weights)
    # the switch does something at D = 50 (so the comparisons below can fail)
    assert np.max(np.abs(obs_on["test_loss"] - obs_off["test_loss"])) > 1e-2  # measured 0.044


def test_switch_on_without_feature_learning_changes_nothing():
    # eps = 0: kappa = a = 0, and every finite-size term (memory u^2/D R_par, the cross field's
    # effect on Delta, the readout term a^2 (...), the bulk norm n of the quadratic sector) carries a
    # factor kappa or a.  Round-off level.
    grid = dict(dim=50, dt=0.2, t_max=4.0, nodes=6, samples=8)
    _, K_off, off = _sweep(1.0, 3.0, 0.0, finite_size=False, **grid)
    _, K_on, on = _sweep(1.0, 3.0, 0.0, finite_size=True, **grid)
    for name in ("train_loss", "test_loss", "spike", "bulk", "mean_norm"):
        assert np.max(np.abs(on[name] - off[name])) < 1e-10, name  # measured: 0 (bitwise equal)
    assert np.max(np.abs(K_on["C_q"])) < 1e-12 and np.max(np.abs(on["spike_bulk_cross"])) < 1e-12


def test_switch_on_at_huge_dim_is_the_dinf_dmft():
    # At fixed tau the finite-size terms are O(s) = O(1/D), except the bump field zeta and the bulk
    # norm n: zero-mean per-site fields of sd sqrt(2 ratio E[b^2] / D) and sqrt(2 / D), whose sampled
    # averages leave O(D^-1/2) noise.  Measured max |on - off| (train, test, bulk, mean_norm):
    # D = 1e9: 3.5e-6, 3.8e-6, 1.8e-5, 1.7e-5 with the site-covariance rate of section 3e, itself
    # 7.5e-6 there (3.0e-6, 1.7e-6, 5.0e-5, 1.3e-5 before it; 2.3e-6, 1.5e-6, 3.1e-5, 9.4e-6 without
    # the norm); D = 1e11: each / 10.0 (D^-1/2).  Bounds: 2x the measured values, and the D^-1/2 decay.
    dev = {}
    for dim in (10**9, 10**11):
        grid = dict(dim=dim, dt=0.2, t_max=3.0, nodes=8, samples=8)
        _, _, off = _sweep(0.5, 2.0, 0.3, finite_size=False, **grid)
        _, _, on = _sweep(0.5, 2.0, 0.3, finite_size=True, **grid)
        dev[dim] = {name: np.max(np.abs(on[name] - off[name]))
                    for name in ("train_loss", "test_loss", "bulk", "mean_norm")}
    bound = {"train_loss": 7e-6, "test_loss": 7.5e-6, "bulk": 1e-4, "mean_norm": 3.5e-5}
    for name, b in bound.items():
        assert dev[10**9][name] < b, name
        assert dev[10**11][name] < dev[10**9][name] / 5.0, name  # D^-1/2 or faster (10 measured)


# --------------------------------------------------------------------------- D -> inf at fixed time
def test_correction_vanishes_as_dim_grows_at_fixed_time():
    # c1-like (alpha 1, eps 0.02, P/D 5.5, h 0.4) before the generalisation drop, tau <= 40.
    # Measured (seed 0) max |on - off|: D = 200: train 0.0101, test 0.0022; D = 3200: train 0.00073,
    # test 0.00022 (seeds 0-3 at D = 3200: train 0.0005-0.0012, test 2e-5-5e-4).  The decay is ~1/D
    # (ratio 16 expected, 13.9 and 10.2 measured): require > 6, which a D^-1/2 decay (ratio 4) would fail.
    # Absolute bounds at D = 3200 with a 2x margin over the largest seed: test 1e-3, train 2.5e-3
    # (the train-loss difference, 1.2e-3 at seed 0, does not fit under 1e-3).
    kw = dict(dt=0.4, t_max=40.0, nodes=8, samples=8, seed=0)
    dev, cross = {}, {}
    for dim in (200, 3200):
        _, _, off = _sweep(1.0, 5.5, 0.02, finite_size=False, dim=dim, **kw)
        _, _, on = _sweep(1.0, 5.5, 0.02, finite_size=True, dim=dim, **kw)
        dev[dim] = {name: np.max(np.abs(on[name] - off[name])) for name in _LOSSES}
        cross[dim] = on["spike_bulk_cross"][-1]
    for name in _LOSSES:
        assert dev[200][name] > 6 * dev[3200][name], (name, dev)
    assert dev[3200]["test_loss"] < 1e-3, dev
    assert dev[3200]["train_loss"] < 2.5e-3, dev
    # s C_q with C_q ~ 0.57 s and s ~ 1/D at fixed tau: ~D^-2, ratio 256; measured 247 (235-268
    # over seeds and code versions).  A 1/D decay (16) would fail; so would no decay.
    assert 100 < cross[200] / cross[3200] < 600, cross


# --------------------------------------------------------------------------- fixed point
def test_finite_size_sweep_is_a_fixed_point_of_the_map():
    # Same check as for the D -> inf map (tests/test_two_layer.py), now on all eight kernels;
    # measured: bitwise equal (0).  D = 50 so that s, C_q are O(1) by tau = 3 (s(3) = 1.7).
    p, K, obs = _sweep(0.5, 2.0, 0.3, finite_size=True, dim=50, dt=0.2, t_max=3.0, nodes=8, samples=8)
    assert obs["spike_bulk_cross"].max() > 0.1  # measured 0.26: the cross terms are not negligible
    F = p.update(K)
    assert set(F) == set(KERNEL_NAMES) | set(CROSS_KERNEL_NAMES)
    for name in K:
        scale = np.max(np.abs(K[name])) + 1e-300
        assert np.max(np.abs(F[name] - K[name])) / scale < 1e-10, name
    # ... and the check is not vacuous: the map's output depends on its inputs C_q (through the
    # cross field in every site's Delta: all kernels move) and R_q (one application moves only
    # C_q, whose weights it drives).  Measured for a factor 1.5: smallest relative change of the six
    # D -> inf kernels 0.012 (R_par; C_par moves 0.81), of C_q 0.56; bound 1e-4.
    for name, moves in (("C_q", KERNEL_NAMES), ("R_q", ("C_q",))):
        bent = {k: v.copy() for k, v in K.items()}
        bent[name] *= 1.5
        G = p.update(bent)
        moved = {k: np.max(np.abs(G[k] - K[k])) / (np.max(np.abs(K[k])) + 1e-300) for k in K}
        assert min(moved[k] for k in moves) > 1e-4, (name, moved)


# --------------------------------------------------------------------------- trace sum rule
def _sum_rule_residual(finite_size, rate=True, dim=400):
    """weight side - data side of the exact trace sum rule (TwoLayerProblem.trace_sum_rule), c1-like
    (alpha 1, eps 0.02, P/D 5.5, h 0.4) through the grokking drop, tau <= 100."""
    problem_class = TwoLayerProblem if rate else _WithoutSiteRate
    p = problem_class(TwoLayerModel(1.0, 5.5, 0.02), TwoLayerDMFT(
        dim=dim, dt=0.4, t_max=100.0, nodes=12, samples=16, seed=0, finite_size=finite_size))
    K, msg = p.sweep()
    assert msg is None, msg
    r = p.trace_sum_rule(K)
    return r["tau"], r["weight_side"] - r["data_side"], r["data_side"]


@pytest.mark.slow
def test_dinf_dmft_obeys_the_exact_trace_sum_rule():
    # In the networks d tr(A A^T)/D / dtau = 2 kappa E[Delta V] exactly (measured on 32 networks at
    # D = 400: ratio of the two 0.077-0.085 over tau = 40-120 for 2 kappa = 0.08, the spread being
    # finite differences on the recording grid).  The D -> inf DMFT builds its weight side from
    # site averages and must satisfy it up to the O(h) of its Euler steps: measured largest
    # |weight - data| 1.45% of the largest drift (0.0075 at tau = 60, drift 0.52).  Bound 3%.
    _, res, data = _sum_rule_residual(False)
    assert np.max(np.abs(res)) < 0.03 * np.max(np.abs(data)), np.max(np.abs(res))


@pytest.mark.slow
def test_site_covariance_rate_restores_part_of_the_sum_rule():
    # finite_size changes each site's V (bump field zeta, bulk norm n, cross field chi), and the sites'
    # residuals are correlated with those parts, so the bulk variance must grow by kappa E[Delta n
    # Gamma (C_z + zeta)] and not by Rhat_z * C_z (docs/finite-size.md, section 3e).  Measured
    # (D = 400, 12 x 16 samples), largest |weight - data| over tau >= 60: 0.026 without the rate,
    # 0.018 with it (tau = 100: 0.022 -> 0.012); at 16 x 32 samples 0.043 -> 0.027.  What is left is the
    # cross direction's part (section 3e: its weight-side counterpart is not derived).  Bounds: the
    # rate must cut the late violation by 15% or more, and without it the violation must exceed the
    # 3% the D -> inf DMFT is held to (a check that the comparison is not vacuous).
    tau, off, _ = _sum_rule_residual(True, rate=False)
    _, on, data = _sum_rule_residual(True, rate=True)
    late = tau >= 60.0
    worst_off, worst_on = np.max(np.abs(off[late])), np.max(np.abs(on[late]))
    assert worst_on < 0.85 * worst_off, (worst_on, worst_off)
    assert worst_off > 0.03 * np.max(np.abs(data)), worst_off


# --------------------------------------------------------------------------- readout
def _readout_case(D, seed, alpha=1.0, eps=0.5):
    """Second moment S = M + w w^T: a Wishart bulk M (diagonal ~1.3) and a learned direction
    w = sqrt(D) (bhat + r), r perp bhat, |r|^2 = 1 (the bulk component of the learned direction),
    so that s ~ 1, C_z ~ 2.3, C_q ~ 1.  Returns (exact, D -> inf readout, corrected readout)."""
    rng = np.random.default_rng(seed)
    bhat = rng.standard_normal(D)
    bhat /= np.linalg.norm(bhat)
    Z = rng.standard_normal((D, 2 * D))
    M = 1.3 * Z @ Z.T / (2 * D)
    r = rng.standard_normal(D)
    r -= (r @ bhat) * bhat
    r /= np.linalg.norm(r)
    w = math.sqrt(D) * (bhat + r)
    S = M + np.outer(w, w)
    a = alpha * eps / 2
    # infinite-width network with b = 0 (dmft.simulator.ReducedNetwork.test_loss): teacher
    # (beta.x)^2/2 with beta = sqrt(D) bhat, predictor a x^T (S - I) x
    from dmft.lazy import quadratic_population_loss

    exact = quadratic_population_loss(0.5 * D * np.outer(bhat, bhat) - a * (S - np.eye(D)))
    s = bhat @ S @ bhat / D
    Cz = (np.trace(S) - D * s) / D
    g = S @ bhat
    g -= (g @ bhat) * bhat
    Cq = (g @ g) / (D**2 * s)
    base = float(population_test_loss(alpha, eps, D, Cz, s, 0.0))
    return exact, base, base + float(cross_test_correction(alpha, eps, s, Cq))


def test_cross_readout_term_matches_the_exact_population_loss():
    # Block algebra of ||S - I||_F^2 / D^2 around bhat: (s - 1/D)^2 + 2 s C_q (the off-diagonal
    # block) + ||S_perp - I_perp||_F^2 / D^2, whose rank-one part (the cross direction) is C_q^2 and
    # whose rest is O(1/D); x 2 a^2 these give a^2 (4 s C_q + 2 C_q^2).  What is left is O(1/D):
    # the Wishart bulk (2 a^2 * 0.9 / D), C_q = 1 - 1.3/D, and the a/D of the C_z convention
    # (C_z(0) = 1 - 1/D here, 1 in the DMFT): estimated 0.48 / D, measured D |dev| = 0.51-0.58
    # (D = 100, 400, 1600).  Tolerance 2 / D (~4x the estimate); the uncorrected readout misses
    # by the correction itself, a^2 (4 + 2) = 0.375 (measured 0.3756).
    dev = {}
    for D in (100, 400):
        exact, base, corrected = _readout_case(D, seed=0)
        dev[D] = abs(corrected - exact)
        assert dev[D] < 2.0 / D, (D, exact, corrected)
        assert abs(base - exact) > 0.3, (D, exact, base)
    # the remainder is O(1/D), not a constant offset: x4 in D cuts it ~4x (measured 3.6)
    assert 2.5 < dev[100] / dev[400] < 6, dev


# --------------------------------------------------------------------------- data-set replicas
def test_dataset_spread_of_the_initial_train_loss():
    # At tau = 0 the train loss of a training set is (1/P) sum_mu (u_mu^2/2)^2: its sd over sets is
    # sqrt(Var(u^4/4)/P) = sqrt((105 - 9)/16/P) = sqrt(6/P).  The quadrature (|u| <= 4.5) gives
    # Var = 5.893 (1.8% low: the cut tail carries u^8 mass), independent of nodes >= 8.
    # Spread of the sd estimate itself: u^4 has kurtosis 156 under the quadrature, so with R sets
    # the relative error is sqrt((2 + 155/P) / (4 R)): 11% at R = 64, P = 150 -- 20% would be only
    # ~1.8 sigma; with R = 256 it is 5.5% (20% = 3.6 sigma) and the 0.4-0.6 window on the ratio
    # sd(4D)/sd(D) is 2.8 sigma.  Measured: sd / sqrt(6/P) = 0.953 (D = 50), 0.931 (D = 200), ratio 0.488.
    R = 256
    kw = dict(alpha=1.0, ratio=3.0, eps=0.02, dt=0.2, t_max=0.4, nodes=24, samples=2, replicas=1, datasets=R)
    sd = {}
    for dim in (50, 200):
        res = solve(dim=dim, **kw)
        obs, bands, diag = res.observables, res.dataset_bands, res.diagnostics
        P = round(3.0 * dim)
        assert int(diag["datasets_failed"]) == 0
        assert len(diag["t_train_datasets"]) == R and len(diag["t_test_datasets"]) == R
        sd[dim] = bands["sd"]["train_loss"][0]
        assert sd[dim] == pytest.approx(math.sqrt(6.0 / P), rel=0.2)
        # the data-set mean is an unbiased estimate of the central (population) value:
        # measured 0.72 and 0.33 standard errors off
        assert abs(bands["mean"]["train_loss"][0] - obs["train_loss"][0]) < 3 * sd[dim] / math.sqrt(R)
        # the test loss at tau = 0 (f = 0) is 3/4 on every training set; s(0) = 1/D likewise
        assert bands["sd"]["test_loss"][0] < 1e-12 and bands["sd"]["spike"][0] < 1e-12
        assert bands["q16"]["train_loss"][0] < bands["mean"]["train_loss"][0] < bands["q84"]["train_loss"][0]
    assert 0.4 < sd[200] / sd[50] < 0.6, sd


# --------------------------------------------------------------------------- bad inputs
def test_bad_inputs_are_refused():
    with pytest.raises(ParameterError, match="datasets"):
        solve(alpha=1.0, ratio=2.0, datasets=-1)
    with pytest.raises(ParameterError, match="finite_size"):
        TwoLayerDMFT(finite_size="yes")
    from click.testing import CliRunner

    from dmft.cli import main

    res = CliRunner().invoke(main, ["solve", "--model", "linear", "--ratio", "2", "--finite-size"])
    assert res.exit_code == 2, res.output
    assert "--finite-size" in res.output and "Traceback" not in res.output


@pytest.mark.slow
def test_finite_size_dmft_against_networks_at_d100():
    """Against 24 exact infinite-width networks at D = 100 (a grokking point, alpha 2, eps 0.05,
    P/D 5.5, h 0.4, tau <= 60).  Measured, D -> inf DMFT against finite-size DMFT, largest deviation in
    networks' standard errors: test loss 6.9 -> 0.95 SE, train loss 16.4 -> 6.6 SE (1.7 and 6.4 SE
    without the reaction to a site's own bump of docs/finite-size.md, section 3d; 3.0 and 7.1 SE before
    the site-covariance rate of section 3e).  The cross covariance, an O(1) quantity the D -> inf DMFT
    sets to zero, is predicted within 33% (DMFT / networks = 1.08, 1.23, 1.33 at tau = 30, 40, 60; 1.07,
    1.18, 1.16 without the reaction, which keeps the large-|u| residuals, and with them the cross
    direction's drive, up at this small D; 1.33, 1.38, 1.15 before the spike-noise leg of C_q carried the
    factor cos^2).  Bounds: the finite-size terms must cut both largest deviations (in SE) by 40%, the
    test loss must be within 2.5 SE, and the cross covariance agree within a factor 1.4."""
    from dmft.simulator import simulate

    alpha, eps, ratio, h, t_max, dim, seeds = 2.0, 0.05, 5.5, 0.4, 60.0, 100, 24
    tau = np.arange(0.0, t_max + 1e-9, h)
    sim = simulate(alpha=alpha, ratio=ratio, eps=eps, dim=dim, dt=h, t_max=t_max, seeds=seeds, seed=0,
                   record_tau=tau)
    obs = {fs: _sweep(alpha, ratio, eps, finite_size=fs, dim=dim, dt=h, t_max=t_max, nodes=12, samples=16)[2]
           for fs in (False, True)}
    for name in ("test_loss", "train_loss"):
        per = sim.per_seed[name]
        mean, se = per.mean(axis=0), per.std(axis=0, ddof=1) / math.sqrt(seeds)
        live = se > 0  # at tau = 0 (f = 0) the test loss is 3/4 for every network: no spread
        dev = {fs: np.max(np.abs(obs[fs][name] - mean)[live] / se[live]) for fs in (False, True)}
        assert dev[True] < 0.6 * dev[False], (name, dev)
        assert dev[False] > 5.0, name  # the D -> inf DMFT is clearly off here
        if name == "test_loss":
            assert dev[True] < 2.5, dev
    for t in (30.0, 40.0, 60.0):
        k = int(round(t / h))
        ratio_cross = obs[True]["spike_bulk_cross"][k] / sim.observables["spike_bulk_cross"][k]
        assert 1 / 1.4 < ratio_cross < 1.4, (t, ratio_cross)


# --------------------------------------------------------------------------- bump field
def test_bump_readout_is_the_exact_variance_of_the_quadratic_form():
    # M = c I + sum_nu b_nu xhat_nu xhat_nu^T over P = ratio D random directions (the memorised
    # points' bumps): the exact Var_x(x^T M x) a^2 = 2 a^2 tr(M^2) / D^2 for x ~ N(0, I/D) against
    # bump_test_correction(C_z = 1 + tr M / D, E[b^2]).  Measured relative error over 3 seeds:
    # D = 100: <= 0.9%, D = 400: <= 0.2% (the overlaps (xhat.xhat')^2 fluctuate around 1/D).
    from dmft.two_layer import bump_test_correction

    alpha, eps, ratio = 1.0, 0.02, 5.5
    a = alpha * eps / 2
    for dim, tol in ((100, 0.02), (400, 0.005)):
        for seed in range(3):
            rng = np.random.default_rng(seed)
            X = rng.standard_normal((int(ratio * dim), dim))
            Xh = X / np.linalg.norm(X, axis=1, keepdims=True)
            b = 30.0 * rng.standard_normal(X.shape[0]) ** 2
            M = 5.0 * np.eye(dim) + (Xh.T * b) @ Xh
            exact = 2 * a * a * np.sum(M * M) / dim**2
            model = bump_test_correction(alpha, eps, ratio, dim, 1.0 + np.trace(M) / dim, np.mean(b**2))
            assert abs(model / exact - 1) < tol, (dim, seed, model, exact)


def test_bump_field_has_the_variance_of_the_other_points_bumps():
    # The sampled field zeta (C_z + zeta per site) must have zero mean (antithetic) and variance
    # 2 ratio E[b^2] / D over the sites (b lagged one step).  The sampled variance is noisy (the
    # largest-|u| bumps dominate): measured ratio 0.94, 0.61, 1.02 at seeds 1-3 (tau = 40, c1-like,
    # D = 200, mean 0.86); the mean must lie in (0.7, 1.4), which a factor 2 error would leave.
    ratios = []
    for seed in (1, 2, 3):
        kw = dict(dim=200, dt=0.4, t_max=40.0, nodes=8, samples=16, seed=seed)
        problem, K, _ = _sweep(1.0, 5.5, 0.02, finite_size=True, **kw)
        st, w = problem.last_pass, problem.weights
        t = problem.T1 - 1
        live = w > 0
        zeta = (st["Czs"][:, t, t] - K["C_z"][t, t])[live]
        var_model = 2 * 5.5 / 200 * st["bump2"][t - 1]
        ratios.append(np.sum(w[live] * zeta**2) / np.sum(w[live]) / var_model)
        assert abs(np.sum(w[live] * zeta)) / np.sum(w[live]) < 1e-9 * math.sqrt(var_model)
    assert 0.7 < np.mean(ratios) < 1.4, ratios


# --------------------------------------------------------------------------- bulk norm of a site
def test_bulk_norm_draw():
    # n = |x_perp|^2 per sampled site: antithetic around 1 (mean exactly 1), variance 2/D; the
    # noise-free twins of the control variate have n = 1; the D -> inf DMFT has no bulk norm (n = 1).
    opts = dict(dim=200, dt=0.4, t_max=4.0, nodes=8, samples=64, seed=3)
    on = TwoLayerProblem(TwoLayerModel(1.0, 5.5, 0.02), TwoLayerDMFT(finite_size=True, **opts))
    off = TwoLayerProblem(TwoLayerModel(1.0, 5.5, 0.02), TwoLayerDMFT(finite_size=False, **opts))
    live = on.weights > 0
    n = on.bulk_norm[live]
    assert abs(n.mean() - 1.0) < 1e-12
    assert 0.8 < n.var() / (2 / 200) < 1.25, n.var()  # 256 independent pairs: sd of the ratio ~0.09
    assert np.all(on.bulk_norm[on.twins] == 1.0)
    assert not hasattr(off, "bulk_norm")


@pytest.mark.slow
def test_response_along_a_points_own_input_has_the_networks_spread():
    """A point's memory is its input's quadratic form in the propagator, x^T A(t,t') x, in the networks
    (A(t) A(t')^{-1}, 8 exact infinite-width networks at D = 100, alpha 2, eps 0.05, P/D 5.5, h 0.4).
    In the DMFT it is n (Gamma R_z)(t, t') for a site with bulk norm n = |x_perp|^2.  Its spread over
    the points with |u| < 1.2 is set by n (sd sqrt(2/D) = 0.14): measured sd, DMFT seeds 0 / 1 against
    the networks, at (40, 20): 0.188 / 0.166 against 0.183; at (60, 40): 0.138 / 0.117 against 0.134;
    with n = 1 (the D -> inf site): 0.068 / 0.051 and 0.040 / 0.028.  Means: 1.166 / 1.194 against
    1.219 and 0.923 / 0.930 against 0.965 (2-4% low; 1.200 / 1.209 and 0.950 / 0.954 without the
    site-covariance rate of docs/finite-size.md section 3e, which shrinks every point's memory in
    proportion, the mean-field form of the other points' reaction: at this small D it takes 2-3% too
    much from the small-|u| points).  Bounds: sd ratio in (0.75, 1.3), means within 0.07."""
    from dmft.simulator import ReducedNetwork, make_problem

    alpha, eps, ratio, h, dim = 2.0, 0.05, 5.5, 0.4, 100
    pairs = ((40.0, 20.0), (60.0, 40.0))
    steps = {t: int(round(t / h)) for pair in pairs for t in pair}
    net_q = {pair: [] for pair in pairs}
    for seed in range(8):
        problem = make_problem(dim, int(ratio * dim), 0.0, np.random.default_rng(seed))
        net = ReducedNetwork(problem, alpha, eps, eta=h * dim)
        A = {}
        for n in range(max(steps.values()) + 1):
            if n in steps.values():
                A[n] = net.A.copy()
            net.step()
        small = np.abs(problem.X @ problem.bhat) * math.sqrt(dim) < 1.2
        X = problem.X[small]
        for t, tp in pairs:
            prop = np.linalg.solve(A[steps[tp]].T, A[steps[t]].T).T
            net_q[(t, tp)].append(np.einsum("pi,ij,pj->p", X, prop, X))
    p, K, _ = _sweep(alpha, ratio, eps, finite_size=True, dim=dim, dt=h, t_max=60.0, nodes=12, samples=16, seed=0)
    G, w = p.last_pass["Gam"], p.weights
    sel = (p.u < 1.2) & (w > 0)
    for t, tp in pairs:
        a, b = steps[t], steps[tp]
        later = np.arange(b + 1, a + 1)
        q = p.bulk_norm * (G[:, a, later] @ K["R_z"][later, b])
        mean = np.average(q[sel], weights=w[sel])
        sd = math.sqrt(np.average((q[sel] - mean) ** 2, weights=w[sel]))
        ref = np.concatenate(net_q[(t, tp)])
        assert 0.75 < sd / ref.std() < 1.3, (t, tp, sd, ref.std())
        assert abs(mean - ref.mean()) < 0.07, (t, tp, mean, ref.mean())


@pytest.mark.slow
def test_reaction_to_own_bump_fits_large_u_points_like_networks():
    """The other points' reaction to a site's own bump (docs/finite-size.md, section 3d) slows the
    memorisation of the large-|u| points, which the DMFT otherwise fits too well.  Against 16 exact
    infinite-width networks at D = 100 (alpha 2, eps 0.05, P/D 5.5, h 0.4), the mean residual of the
    points with |u| >= 2.3 at tau = 60: networks 0.315 +- 0.018 (jackknife over networks); finite-size
    DMFT (12 x 16 sites, seed 0 / 1) 0.309 / 0.290 with the term, 0.216 / 0.192 without it (5.5 / 6.8
    SE low).  Bounds: within 2 SE with the term, more than 4 SE off without it."""
    from dmft.simulator import ReducedNetwork, make_problem

    alpha, eps, ratio, h, dim, t_max, u_cut = 2.0, 0.05, 5.5, 0.4, 100, 60.0, 2.3
    last = int(round(t_max / h))
    sums = []
    for seed in range(16):
        problem = make_problem(dim, int(ratio * dim), 0.0, np.random.default_rng(seed))
        net = ReducedNetwork(problem, alpha, eps, eta=h * dim)
        for _ in range(last):
            net.step()
        large = np.abs(problem.X @ problem.bhat) * math.sqrt(dim) >= u_cut
        sums.append((net.residual()[large].sum(), large.sum()))
    sums = np.array(sums)
    ref = sums[:, 0].sum() / sums[:, 1].sum()
    jack = [(sums[:, 0].sum() - s) / (sums[:, 1].sum() - n) for s, n in sums]
    se = math.sqrt((len(sums) - 1) * np.var(jack))
    dev = {}
    for reaction in (True, False):
        problem_class = TwoLayerProblem if reaction else _WithoutReaction
        p = problem_class(TwoLayerModel(alpha, ratio, eps),
                          TwoLayerDMFT(dim=dim, dt=h, t_max=t_max, nodes=12, samples=16, seed=0, finite_size=True))
        _, msg = p.sweep()
        assert msg is None, msg
        sel = (p.u >= u_cut) & (p.weights > 0)
        dev[reaction] = abs(np.average(p.last_pass["Delta"][sel, last], weights=p.weights[sel]) - ref) / se
    assert dev[True] < 2.0, (ref, se, dev)
    assert dev[False] > 4.0, (ref, se, dev)


def test_reaction_residual_is_linear_in_the_bump_and_vanishes_without_feature_learning():
    """-2 a ratio b / D (a = alpha eps / 2): linear in the site's bump, 1/D, zero at eps = 0."""
    bump = np.random.default_rng(3).exponential(50.0, 200)
    r = reaction_residual(2.0, 0.05, 5.5, 400, bump)
    np.testing.assert_allclose(r, -2.0 * (2.0 * 0.05 / 2) * 5.5 / 400 * bump, rtol=1e-14)
    np.testing.assert_allclose(reaction_residual(2.0, 0.05, 5.5, 800, bump), r / 2, rtol=1e-14)
    assert np.all(reaction_residual(2.0, 0.0, 5.5, 400, bump) == 0.0)


def test_replica_pull_fluctuation_is_finite_training_set_noise():
    # A training-set replica adds the finite-P part of the cross direction's pull on the spike,
    # kappa sum_mu (W_mu - w_mu)(u Delta c - E_chi[u Delta c])_mu / phi (docs/finite-size.md, section 4).
    # W - w ~ P^-1/2: for a fixed standardized deviation pattern the spike's log moves like
    # P^-1/2 (x 1/2 per x 4 in D at fixed ratio), and no deviation changes nothing.  Measured:
    # d log s(T) = 4.2e-2 / 2.2e-2 / 1.1e-2 at D = 200 / 800 / 3200 (ratios 1.93, 2.03).
    base = dict(dt=0.2, t_max=3.0, nodes=8, samples=8, finite_size=True, control_variate=False)
    shift = {}
    for dim in (200, 800, 3200):
        p = TwoLayerProblem(TwoLayerModel(0.5, 2.0, 0.3), TwoLayerDMFT(dim=dim, **base))
        K, msg = p.sweep()
        assert msg is None
        log_s = np.log(np.diag(K["C_par"]) / dim)
        w = p.weights / p.weights.sum()
        z = (np.random.default_rng(1).multinomial(10**6, w) / 10**6 - w) * 1e3  # sd ~ sqrt(w)
        p.dataset_deviation = np.zeros_like(w)
        K0, _ = p.sweep()
        np.testing.assert_array_equal(np.diag(K0["C_par"]), np.diag(K["C_par"]))
        p.dataset_deviation = z / math.sqrt(2.0 * dim)
        K1, msg = p.sweep()
        assert msg is None
        shift[dim] = np.log(np.diag(K1["C_par"])[-1] / dim) - log_s[-1]
    assert abs(shift[200]) > 0.01, shift
    assert 1.7 < shift[200] / shift[800] < 2.3 and 1.7 < shift[800] / shift[3200] < 2.3, shift


def test_bump_field_excludes_the_site_itself_and_its_mirror_and_keeps_its_variance():
    # zeta_mu = sum_nu b_nu (e_nu^2 - 1) / D runs over the *other* points (docs/finite-size.md, 3b).
    # A sampled site drawn as its own bump partner, or its antithetic mirror, fed its own bump back
    # into its covariance; that self-feedback made about one draw in 16 run away (section 5c).  Few
    # sites and many partners make such draws common (here 1/4 of all partners): they must get zero
    # weight, and the rest must keep E[sum_k omega_k^2] = 2 ratio / D, the variance of zeta per unit
    # bump^2 (without the rescaling it would be 25 % low).
    dim, ratio = 400, 5.5
    p = TwoLayerProblem(TwoLayerModel(1.0, ratio, 0.02),
                        TwoLayerDMFT(dim=dim, dt=0.4, t_max=2.0, nodes=2, samples=4, seed=0, finite_size=True))
    per, half, S = 5, 2, 4
    site = np.arange(p.partners.shape[0])
    within = site % per
    mirror = np.where(within < half, site + half, np.where(within < S, site - half, -1))
    own = (p.partners == site[:, None]) | (p.partners == mirror[:, None])
    assert own[within < S].mean() > 0.2  # the case is exercised
    assert np.all(p.omegas[own] == 0.0)
    assert np.all(p.omegas[within == S] == 0.0)  # the control variate's noise-free twins
    total = (p.omegas[within < S] ** 2).sum(axis=1)
    assert abs(total.mean() / (2.0 * ratio / dim) - 1.0) < 0.1, total.mean() * dim / (2.0 * ratio)
