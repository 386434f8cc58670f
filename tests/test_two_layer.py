"""Two-layer DMFT: internal consistency (sweep = fixed point of the map, iteration reaches
it), agreement with simulated networks at the same Euler step, the lazy limit, and errors.

Tolerances.  Deviations between the D -> inf DMFT and a seed-averaged simulation at finite
D have three parts: the simulation's standard error (measured here), the DMFT's Monte-Carlo
error (measured run-to-run spread: ~0.014 on the test loss in the lazy case and ~0.036 in
the rich case at 16 nodes x 32 paths), and the finite-D bias (O(D^-1/2)-O(1/D): 0.026 on
the lazy test loss at D = 200 in the reference note).  Each test states its budget.
"""
import math

import numpy as np
import pytest

from dmft.params import ParameterError, TwoLayerModel
from dmft.two_layer import TwoLayerDMFT, TwoLayerProblem, population_test_loss, solve, train_loss_rise


def _sweep(alpha, ratio, eps, dt, t_max, dim=200, nodes=16, samples=32, seed=0):
    p = TwoLayerProblem(TwoLayerModel(alpha, ratio, eps), TwoLayerDMFT(dim=dim, dt=dt, t_max=t_max, nodes=nodes,
                                                                      samples=samples, seed=seed))
    K, msg = p.sweep()
    assert msg is None
    return p, K, p.observables_from(K, p.last_pass["Delta"])


def test_initial_values_are_exact():
    # At tau = 0 the network is centred (f = 0): train and test loss are E[u^4]/4 = 3/4
    # (train: over the truncated Gauss-Legendre quadrature, exact up to the cut mass).
    p, K, obs = _sweep(1.0, 2.0, 0.1, 0.2, 1.0)
    assert obs["test_loss"][0] == pytest.approx(0.75, abs=1e-12)
    assert obs["train_loss"][0] == pytest.approx(0.75, abs=2e-3)
    assert obs["spike"][0] == pytest.approx(1 / 200)
    assert obs["bulk"][0] == pytest.approx(1.0) and obs["mean_norm"][0] == 0.0


def test_sweep_kernels_are_a_fixed_point_of_the_map():
    # The causal sweep and the fixed-point map F are two code paths; the sweep's kernels must
    # satisfy K = F(K) to round-off (same samples).
    p, K, _ = _sweep(0.5, 2.0, 0.3, 0.2, 3.0, samples=8)
    F = p.update(K)
    for name in K:
        scale = np.max(np.abs(K[name])) + 1e-300
        assert np.max(np.abs(F[name] - K[name])) / scale < 1e-9, name


def test_iteration_reaches_the_sweep_solution():
    # The map is causal (row t of F(K) needs rows <= t of K), so plain undamped iteration from
    # the frozen network is exact after at most T + 1 steps; damped and Anderson-accelerated
    # iterations must reach the same kernels on the same samples.
    kwargs = dict(alpha=0.5, ratio=2.0, eps=0.3, dim=100, t_max=2.0, dt=0.2, nodes=8, samples=8, seed=3, replicas=1)
    sw = solve(method="sweep", **kwargs)
    assert sw.success and sw.confirmation_residual < 1e-9
    plain = solve(method="iterate", damping=0.0, accel="none", tol=1e-12, max_iter=100, **kwargs)
    assert plain.success, plain.message
    assert plain.nit <= 10 + 2  # T + 1 steps to exactness, + 1 to see a zero residual
    for method_kwargs in ({"damping": 0.3, "accel": "none"}, {"damping": 0.0, "accel": "anderson"}):
        it = solve(method="iterate", tol=1e-11, max_iter=200, **method_kwargs, **kwargs)
        assert it.success, it.message
        for name in ("train_loss", "test_loss", "spike", "bulk", "mean_norm"):
            np.testing.assert_allclose(it.observables[name], sw.observables[name], rtol=1e-8, atol=1e-10)
    for name in ("train_loss", "test_loss", "spike", "bulk", "mean_norm"):
        np.testing.assert_allclose(plain.observables[name], sw.observables[name], rtol=1e-10, atol=1e-12)


def test_population_test_loss_readout_matches_monte_carlo():
    # Closed-form readout vs direct sampling of the limiting predictor on fresh inputs.
    rng = np.random.default_rng(0)
    alpha, eps, dim, Cz, s, Cb = 0.7, 0.4, 50, 1.3, 0.6, 0.2
    n = 2_000_000
    u = rng.standard_normal(n)
    m = math.sqrt(Cb) * rng.standard_normal(n)
    a = alpha * eps / 2
    f = alpha * m + a * m**2 + a * (Cz - 1) + a * u**2 * (s - 1 / dim)
    err = (u**2 / 2 - f) ** 2
    ref = population_test_loss(alpha, eps, dim, Cz, s, Cb)
    assert abs(err.mean() - ref) < 4 * err.std() / math.sqrt(n)


def _compare_with_simulation(alpha, ratio, eps, dt, t_max, dim, seeds, dmft_seeds, samples):
    from dmft.simulator import simulate

    runs = [_sweep(alpha, ratio, eps, dt, t_max, dim=dim, samples=samples, seed=s)[2] for s in range(dmft_seeds)]
    tau = runs[0]["tau"]
    sim = simulate(alpha=alpha, ratio=ratio, eps=eps, dim=dim, dt=dt, t_max=t_max, seeds=seeds, seed=100,
                   record_tau=tau)
    np.testing.assert_allclose(sim.tau, tau, atol=1e-9)
    out = {}
    for name in ("train_loss", "test_loss"):
        theory = np.mean([r[name] for r in runs], axis=0)
        dmft_se = np.std([r[name] for r in runs], axis=0, ddof=1) / math.sqrt(dmft_seeds)
        sim_se = sim.std[name] / math.sqrt(seeds)
        out[name] = (np.abs(theory - sim.observables[name]), np.sqrt(sim_se**2 + dmft_se**2))
    return out


def test_lazy_case_agrees_with_simulation():
    # c3 of the reference note (alpha 10, eps 0.5, ratio 2, h 0.2), tau <= 4, D = 200.
    res = _compare_with_simulation(10.0, 2.0, 0.5, 0.2, 4.0, dim=200, seeds=6, dmft_seeds=2, samples=32)
    for name, (dev, se) in res.items():
        # budget: 4 combined standard errors + 0.03 finite-D bias at D = 200
        assert np.all(dev <= 4 * se + 0.03), (name, dev.max(), se.max())


def test_rich_case_agrees_with_simulation():
    # c2 (alpha 0.05, eps 0.02, ratio 2, h 0.2), tau <= 3: memorisation and the test-loss bump.
    res = _compare_with_simulation(0.05, 2.0, 0.02, 0.2, 3.0, dim=200, seeds=6, dmft_seeds=2, samples=32)
    for name, (dev, se) in res.items():
        assert np.all(dev <= 4 * se + 0.04), (name, dev.max(), se.max())


def test_test_loss_bump_in_rich_regime():
    # Rich regime: fast memorisation while the test loss rises above its initial 0.75 (the bump
    # seen in simulations at tau ~ 3 reaches ~1.1-1.2), then relaxes.
    _, _, obs = _sweep(0.05, 2.0, 0.02, 0.2, 8.0, samples=16)
    assert obs["train_loss"][-1] < 0.05
    assert 0.95 < obs["test_loss"].max() < 1.4


def test_bad_inputs_are_refused_with_the_range():
    with pytest.raises(ParameterError, match="alpha"):
        solve(alpha=-1.0, ratio=2.0)
    with pytest.raises(ParameterError, match="ratio"):
        solve(alpha=1.0, ratio=0.0)
    with pytest.raises(ParameterError, match="samples"):
        solve(alpha=1.0, ratio=1.0, samples=3)
    with pytest.raises(ParameterError, match="t_max"):
        solve(alpha=1.0, ratio=1.0, t_max=0.01, dt=0.2)
    with pytest.raises(ParameterError, match="memory"):
        solve(alpha=1.0, ratio=1.0, t_max=4000.0, dt=0.2, samples=4000)


def test_rows_whose_train_loss_exceeds_the_bound_are_dropped(monkeypatch):
    # Every site's |Delta| can stay below the bound while their mean square, the train loss, does not:
    # the sweep then stops at that row too.  Here the loss is checked against 1e4 (the sites against the
    # real bound): the row at tau = 0.4, train loss 1.8e4, is dropped with the kernels after it.
    import dmft.params
    import dmft.two_layer.problem as problem

    real = dmft.params.diverged
    monkeypatch.setattr(problem, "diverged", lambda v: real(v) if np.ndim(v) else not abs(v) < 1e4)
    res = solve(alpha=0.01, ratio=2.0, eps=0.1, dt=0.2, t_max=6.0, nodes=4, samples=4, replicas=1)
    train = res.observables["train_loss"]
    assert not res.success and "the train loss reached 1.84e+04 at tau = 0.4" in res.message
    assert np.all(np.isfinite(train[:2])) and np.all(train[:2] < 1e4) and np.all(np.isnan(train[2:]))
    assert np.all(np.isnan(res.kernels["C_z"][2:])) and np.all(np.isfinite(res.kernels["C_z"][:2, :2]))


def test_divergence_stops_with_a_clear_message_and_keeps_good_rows():
    # alpha = 0.01, eps = 0.1 (eps/alpha = 10) at h = 0.2: the rich single sites are Euler-unstable.
    res = solve(alpha=0.01, ratio=2.0, eps=0.1, dt=0.2, t_max=6.0, nodes=4, samples=4, replicas=1)
    assert not res.success
    assert "diverged" in res.message and "dt" in res.message and "tau" in res.message
    good = np.isfinite(res.observables["test_loss"])
    assert good[0] and good.sum() >= 2 and not good[-1]
    assert np.all(good[: good.sum()])  # the rows before the divergence are kept
    # every row kept is below the divergence bound shared with the simulator
    from dmft.params import DIVERGENCE_BOUND

    assert np.all(res.observables["train_loss"][good] < DIVERGENCE_BOUND)
    # a step beyond Euler stability of the linear fit modes is refused up front, with the bound
    with pytest.raises(ParameterError, match=r"dt=0.2: allowed range is 0 < dt < .*0.1716"):
        solve(alpha=1.0, ratio=0.5, dt=0.2)


def test_a_sustained_rise_of_the_train_loss_is_flagged_and_edge_of_stability_is_not():
    # A finite-size sweep that ran away (g2, D = 400, 48 x 64 sites, seed 3; docs/finite-size.md,
    # section 5c): the train loss fell to 0.06563 at tau = 66 and then rose at every step, to 0.167 at
    # tau = 100, while the networks at the same dt keep descending.  Its shape: a descent whose rate
    # slows linearly through zero.
    tau = np.arange(251) * 0.4
    runaway = 0.0656 + 2e-5 * (tau - 66.0) ** 2
    rise = train_loss_rise(tau, runaway)
    assert rise["from_tau"] == pytest.approx(66.0) and 67.0 < rise["tau"] < 72.0
    assert train_loss_rise(tau, 0.05 + np.exp(-tau / 30)) is None  # a healthy descent
    # Networks above the edge of stability (alpha 0.5, eps 0.3, dt 0.2) raise their train loss in
    # period-2 oscillations: exact gradient descent, not to be flagged.
    from dmft.simulator import simulate

    net = simulate(alpha=0.5, ratio=2.0, eps=0.3, dim=200, dt=0.2, t_max=6.0, seeds=4, seed=0)
    per_seed = net.per_seed["train_loss"]
    assert np.any(np.diff(per_seed, axis=1) > 0)  # the oscillation is there
    assert all(train_loss_rise(net.tau, curve) is None for curve in per_seed)


def test_solve_warns_about_a_rising_train_loss(monkeypatch):
    healthy = TwoLayerProblem.observables_from

    def ramp(self, K, Delta):  # a run whose train loss turns up from step 5 on
        out = healthy(self, K, Delta)
        out["train_loss"] = out["train_loss"] + 0.05 * np.maximum(np.arange(out["train_loss"].size) - 5, 0)
        return out

    monkeypatch.setattr(TwoLayerProblem, "observables_from", ramp)
    with pytest.warns(RuntimeWarning, match="train loss rose"):
        res = solve(alpha=1.0, ratio=2.0, eps=0.02, dt=0.2, t_max=4.0, nodes=4, samples=4, replicas=1)
    assert "warning: the train loss rose" in res.message and "edge of stability" in res.message


def test_lazy_limit_is_kernel_gradient_flow():
    # alpha -> inf: the DMFT must become gradient flow with the initial NTK
    # K = (x.x')(1 + eps^2 x.x') (dmft.lazy, simulated on data at D = 800, same Euler step),
    # with an O(1/alpha) error.  Measured: max test-loss deviation 0.072 / 0.012 / 0.0033 at
    # alpha = 10 / 100 / 1000 against a kernel-flow standard error of ~0.005 (4 data sets).
    from dmft.lazy import kernel_flow
    from dmft.simulator import make_problem

    eps, ratio, h, t_max, D = 0.5, 2.0, 0.2, 6.0, 800
    runs = {a: _sweep(a, ratio, eps, h, t_max, dim=10**6, samples=16)[2] for a in (10.0, 100.0, 1000.0)}
    tau = runs[10.0]["tau"]
    flows = []
    for s in range(4):
        prob = make_problem(D, int(ratio * D), 0.0, np.random.default_rng(s))
        flows.append(kernel_flow(prob.X, prob.y, eps, tau, beta=prob.beta, dt=h).test_loss)
    flow = np.mean(flows, axis=0)
    se = np.std(flows, axis=0, ddof=1).max() / 2
    dev = {a: np.abs(r["test_loss"] - flow).max() for a, r in runs.items()}
    assert dev[100.0] < 0.3 * dev[10.0]
    assert dev[1000.0] < 4 * se + 0.002
    # the DMFT's own approach to its limit is 1/alpha (no sampling noise enters this difference)
    d1 = np.abs(runs[10.0]["test_loss"] - runs[1000.0]["test_loss"]).max()
    d2 = np.abs(runs[100.0]["test_loss"] - runs[1000.0]["test_loss"]).max()
    assert 6 < d1 / d2 < 14


def test_cli_solve_file_contract_resume_and_mismatch(tmp_path):
    import h5py
    from click.testing import CliRunner

    from dmft.cli import main

    out = tmp_path / "run.h5"
    args = ["solve", "--alpha", "1", "--ratio", "2", "--dt", "0.2", "--t-max", "1", "--nodes", "4", "--samples", "4",
            "--out", str(out), "--quiet"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "test_loss" in res.output and "Monte-Carlo standard error" in res.output
    with h5py.File(out) as f:
        assert f.attrs["kind"] == "dmft-two-layer"
        assert f["observables/tau"].shape == (6,)
        for name in ("train_loss", "test_loss", "spike", "bulk", "mean_norm"):
            assert f["observables/" + name].shape == (6,)
        assert f["errors/mc/test_loss"].shape == (6,) and f["errors/batch/train_loss"].shape == (6,)
        assert set(f["observables"]) == {"tau", "train_loss", "test_loss", "spike", "bulk", "mean_norm", "mean_overlap"}
        assert f["diagnostics/dropped_u_mass"].shape == ()
        assert f["kernels/C_z"].shape == (6, 6)
        assert f["parameters"].attrs["alpha"] == 1.0
        test = f["observables/test_loss"][()]
    assert np.all(np.isfinite(test)) and test[0] == pytest.approx(0.75)
    again = CliRunner().invoke(main, args + ["--resume"])
    assert again.exit_code == 0, again.output
    bad = CliRunner().invoke(main, [a if a != "1" else "0.5" for a in args[:3]] + args[3:] + ["--resume"])
    assert bad.exit_code == 1 and "its parameters differ" in bad.output and "alpha: file 1.0, now 0.5" in bad.output
    neg = CliRunner().invoke(main, ["solve", "--alpha", "-1", "--ratio", "2"])
    assert neg.exit_code == 2 and "alpha" in neg.output and "0 < alpha <= 1e4" in neg.output and "Traceback" not in neg.output


def test_replica_errors_match_the_measured_spread():
    # the mc error is the standard error of the mean of R sampling seeds: sqrt(R) times it is the sd of one
    # seed, which must agree with the spread of an independent set of seeds (4 and 4 seeds: the ratio of two
    # sd estimates with 3 degrees of freedom each lies in [0.2, 5] with probability > 0.98)
    res = solve(alpha=1.0, ratio=5.5, eps=0.02, dt=0.4, t_max=20.0, nodes=8, samples=8, replicas=4)
    err = res.errors["mc"]["test_loss"]
    assert np.all(np.isfinite(err)) and err.max() > 0
    other = [solve(alpha=1.0, ratio=5.5, eps=0.02, dt=0.4, t_max=20.0, nodes=8, samples=8, replicas=1, seed=s)
             .observables["test_loss"] for s in (10, 11, 12, 13)]
    spread = np.std(other, axis=0, ddof=1).max()
    assert 0.2 < 2.0 * err.max() / spread < 5


def test_mc_tol_adds_replicas_until_the_error_is_reached():
    # a tolerance below the error of the first 4 replicas adds replicas until the standard error of the
    # mean train and test loss is below it; the stored error is that of the kept runs
    kw = dict(alpha=1.0, ratio=5.5, eps=0.05, dt=0.4, t_max=8.0, nodes=4, samples=4)
    first = solve(**kw, replicas=4)
    err4 = float(first.diagnostics["mc_error"])
    res = solve(**kw, mc_tol=0.5 * err4)
    runs = res.sampling_runs
    R = runs["train_loss"].shape[0]
    assert R > 4 and len(res.diagnostics["sampling_seeds"]) == R
    se = max(np.max(np.std(runs[n], axis=0, ddof=1)) for n in ("train_loss", "test_loss")) / math.sqrt(R)
    assert math.isclose(float(res.diagnostics["mc_error"]), se, rel_tol=1e-12)
    assert se <= 0.5 * err4 and "mc_tol" in res.message
    np.testing.assert_allclose(res.observables["train_loss"], runs["train_loss"].mean(axis=0), rtol=1e-12)
    # the first four replicas are the same sweeps in both solves
    np.testing.assert_array_equal(runs["train_loss"][:4], first.sampling_runs["train_loss"])


def test_fused_sandwich_rows_equal_the_plain_ones_to_the_last_bit():
    # The data side's fused loops (one pass over each per-site matrix) must give exactly what the
    # plain row-by-row sandwich gives: the finite-size sampler amplifies round-off (docs/finite-size.md,
    # section 5), so a reordered sum would change the cached reference runs.
    from dmft.two_layer.core import _sandwich_row, _sandwich_row_pair
    from dmft.two_layer.finite_size import _cross_sandwich_rows

    rng = np.random.default_rng(3)
    T1 = 41
    G, Gc = (np.tril(rng.normal(size=(T1, T1))) for _ in range(2))
    G[7, :5] = 0.0  # zero entries take the skip branch
    Gc[11, 2] = 0.0
    Cb, Cq, S = (rng.normal(size=(T1, T1)) for _ in range(3))
    for t in (0, 1, 7, 11, T1 - 1):
        ref = [np.empty(t + 1) for _ in range(5)]
        for out, (M, C) in zip(ref, ((G, Cb), (G, Cq), (Gc, S), (Gc, Cb), (Gc, Cq))):
            _sandwich_row(M, C, t, out)
        fused = [np.empty(t + 1) for _ in range(5)]
        _cross_sandwich_rows(G, Gc, Cb, Cq, S, t, *fused)
        pair = [np.empty(t + 1) for _ in range(2)]
        _sandwich_row_pair(G, Cb, Cq, t, *pair)
        for a, b in zip(ref, fused):
            assert np.array_equal(a, b)
        assert np.array_equal(pair[0], ref[0]) and np.array_equal(pair[1], ref[1])
        # and the plain row is the sandwich it claims to be
        assert np.allclose(ref[0], (G @ Cb @ G.T)[t, : t + 1], rtol=1e-12, atol=1e-12)
