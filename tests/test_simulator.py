"""Tests of the network simulator (dmft.simulator): the project's ground truth."""
from __future__ import annotations

import math

import numpy as np
import pytest
from click.testing import CliRunner

from dmft.params import ParameterError
from dmft.simulator import (
    OBSERVABLES,
    ExplicitNetwork,
    ReducedNetwork,
    SimulationResult,
    make_problem,
    simulate,
)


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


# ------------------------------------------------------------------ exact reduction
def test_reduction_equals_explicit_network_at_finite_width():
    """w_i = A w_i(0) + b with the sampled M0, v0 reproduces the explicit N=50 network to round-off,
    for full-batch and minibatch steps, on the training set, off it, and for every order parameter."""
    rng = np.random.default_rng(3)
    D, P, N = 30, 60, 50
    problem = make_problem(D, P, noise=0.1, rng=rng)
    W0 = rng.standard_normal((N, D))
    # large eps and small alpha so that the quadratic part and feature learning matter
    explicit = ExplicitNetwork(problem, alpha=0.7, eps=0.3, eta=0.2 * D, W0=W0)
    reduced = ReducedNetwork(problem, alpha=0.7, eps=0.3, eta=0.2 * D, W0=W0)
    x_new = rng.standard_normal((7, D)) / math.sqrt(D)
    for it in range(24):
        rows = None if it % 3 else np.sort(rng.choice(P, 20, replace=False))
        assert explicit.step(rows) and reduced.step(rows)
    f_e, f_r = explicit.outputs(), reduced.outputs()
    assert np.max(np.abs(f_e)) > 0.1  # the network has moved
    assert _rel(f_e, f_r) < 1e-10
    assert _rel(explicit.predict(x_new), reduced.predict(x_new)) < 1e-10
    assert _rel(explicit.predict(problem.X), f_e) < 1e-10  # quadratic form == network on data
    oe, orr = explicit.observables(), reduced.observables()
    for name in OBSERVABLES:
        assert abs(oe[name] - orr[name]) <= 1e-10 * max(abs(oe[name]), 1e-3), name
    # w_i - b is A w_i(0): the explicit engine's tracked b is the reduced one
    np.testing.assert_allclose(explicit.W - explicit.b, W0 @ reduced.A.T, rtol=0, atol=1e-11)


def test_initial_state():
    """f = 0 at t = 0; train loss = mean y^2; test loss = E[(u^2/2)^2] = 3/4 exactly (|beta|^2 = D);
    spike = 1/D for the infinite-width network; teacher_moment = 1."""
    r = simulate(alpha=1.0, ratio=2.0, dim=25, t_max=1.0, n_records=3)
    o = {k: v[0] for k, v in r.observables.items()}
    assert r.tau[0] == 0.0
    assert o["test_loss"] == pytest.approx(0.75, rel=1e-12)
    assert o["spike"] == pytest.approx(1 / 25, rel=1e-12)
    assert o["bulk"] == pytest.approx(24 / 25, rel=1e-12)
    assert o["teacher_moment"] == pytest.approx(1.0, rel=1e-12)
    assert o["mean_norm"] == 0.0 and o["mean_overlap"] == 0.0
    rng = np.random.default_rng(np.random.SeedSequence(0).spawn(3)[0])
    problem = make_problem(25, 50, 0.0, rng)
    assert np.linalg.norm(problem.beta) ** 2 == pytest.approx(25, rel=1e-12)
    assert o["train_loss"] == pytest.approx(np.mean(problem.y**2), rel=1e-12)


def test_explicit_network_converges_to_infinite_width():
    """On the same data sets, the explicit network approaches the N = inf reduction as N grows
    (error ~ N^-1/2: expected ratio 0.25 from N = 100 to 1600)."""
    kw = dict(alpha=1.0, ratio=2.0, eps=0.3, dim=30, dt=0.2, t_max=8.0, n_records=12)
    seeds = range(8)
    refs = [simulate(**kw, seed=s) for s in seeds]
    errors = []
    for N in (100, 400, 1600):
        e = []
        for s, ref in zip(seeds, refs):
            r = simulate(**kw, width=N, seed=s)
            e.append(max(np.max(np.abs(r.observables[k] - ref.observables[k])) for k in ("train_loss", "test_loss")))
        errors.append(float(np.sqrt(np.mean(np.square(e)))))
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[2] / errors[0] < 0.45, errors
    assert errors[2] < 0.01, errors


# --------------------------------------------------------------- test loss & gradient
@pytest.mark.parametrize("width", [math.inf, 40])
def test_population_test_loss_matches_monte_carlo(width):
    """The exact quadratic-form test loss equals a 1e5-point Monte-Carlo estimate within 4 standard errors."""
    rng = np.random.default_rng(11)
    D, P = 20, 60
    problem = make_problem(D, P, noise=0.2, rng=rng)
    if width == math.inf:
        net = ReducedNetwork(problem, alpha=0.5, eps=0.4, eta=0.2 * D)
    else:
        net = ExplicitNetwork(problem, alpha=0.5, eps=0.4, eta=0.2 * D, W0=rng.standard_normal((width, D)))
    for _ in range(40):
        net.step()
    x = rng.standard_normal((100_000, D)) / math.sqrt(D)
    err2 = (net.predict(x) - problem.clean_target(x)) ** 2
    mc, se = err2.mean(), err2.std(ddof=1) / math.sqrt(err2.size)
    exact = net.test_loss()
    assert abs(exact - 0.75) > 0.05  # trained away from the initial value
    assert abs(exact - mc) < 4 * se, (exact, mc, se)
    assert exact == pytest.approx(net.observables()["test_loss"], rel=1e-12)


def _loss_explicit(W, W0, X, y, alpha, eps):
    """Independent implementation of L(W) = (1/P) sum (y - f)^2 for the explicit network."""
    def phi(h):
        return h + 0.5 * eps * h * h

    f = alpha * np.mean(phi(X @ W.T) - phi(X @ W0.T), axis=1)
    return np.mean((y - f) ** 2)


def _fd_grad(W, *args, h=1e-5):
    g = np.zeros_like(W)
    for idx in np.ndindex(W.shape):
        Wp, Wm = W.copy(), W.copy()
        Wp[idx] += h
        Wm[idx] -= h
        g[idx] = (_loss_explicit(Wp, *args) - _loss_explicit(Wm, *args)) / (2 * h)
    return g


def test_gd_update_is_minus_lr_times_gradient():
    """The full-batch update equals -lr * dL/dW (central finite differences), lr = eta N / alpha^2."""
    rng = np.random.default_rng(5)
    D, P, N, alpha, eps, eta = 6, 9, 4, 0.8, 0.35, 1.3
    problem = make_problem(D, P, noise=0.3, rng=rng)
    W0 = rng.standard_normal((N, D))
    net = ExplicitNetwork(problem, alpha, eps, eta, W0)
    for _ in range(3):  # move away from W0 first (f != 0)
        net.step()
    W = net.W.copy()
    grad = _fd_grad(W, W0, problem.X, problem.y, alpha, eps)
    net.step()
    update = net.W - W
    lr = eta * N / alpha**2
    assert np.linalg.norm(update + lr * grad) < 1e-6 * np.linalg.norm(update)


def test_sgd_update_convention():
    """A minibatch step is -(B/P) lr * gradient of the batch-mean loss, i.e. every point keeps the
    full-batch weight (2 eta/(alpha P)) per step."""
    rng = np.random.default_rng(6)
    D, P, N, alpha, eps, eta = 5, 12, 3, 1.1, 0.4, 0.9
    problem = make_problem(D, P, noise=0.0, rng=rng)
    W0 = rng.standard_normal((N, D))
    net = ExplicitNetwork(problem, alpha, eps, eta, W0)
    net.step()
    rows = np.array([1, 4, 5, 9])
    W = net.W.copy()
    grad = _fd_grad(W, W0, problem.X[rows], problem.y[rows], alpha, eps)  # batch-mean loss
    net.step(rows)
    lr = eta * N / alpha**2
    update = net.W - W
    assert np.linalg.norm(update + (len(rows) / P) * lr * grad) < 1e-6 * np.linalg.norm(update)


def test_sgd_time_convention_and_batch_P_is_full_batch():
    kw = dict(alpha=1.0, ratio=2.0, eps=0.1, dim=20, dt=0.25, t_max=5.0, n_records=10)
    full = simulate(**kw)
    same = simulate(**kw, batch=40)  # B = P
    assert np.array_equal(full.tau, same.tau)
    for name in OBSERVABLES:
        assert np.array_equal(full.observables[name], same.observables[name]), name
    sgd = simulate(**kw, batch=10)
    assert sgd.parameters["tau_per_step"] == pytest.approx(0.25 * 10 / 40)
    assert sgd.parameters["n_steps"] == 80  # 5 / (0.25/4)
    assert sgd.tau[-1] == pytest.approx(5.0)
    # SGD follows the same flow on average: close to full batch at this small step
    assert np.max(np.abs(sgd.observables["train_loss"][-1] - full.observables["train_loss"][-1])) < 0.1
    assert not np.array_equal(sgd.observables["train_loss"], full.observables["train_loss"])


def test_eta_and_dt_are_the_same_time_step():
    a = simulate(alpha=1.0, ratio=1.5, dim=20, dt=0.3, t_max=3.0, n_records=5)
    b = simulate(alpha=1.0, ratio=1.5, dim=20, eta=6.0, t_max=3.0, n_records=5)
    assert np.array_equal(a.tau, b.tau)
    np.testing.assert_allclose(a.observables["train_loss"], b.observables["train_loss"], rtol=1e-12)


def test_record_tau_exact_grid_and_order():
    taus = np.array([0.0, 0.4, 0.4, 1.2, 2.0])
    r = simulate(alpha=1.0, ratio=2.0, dim=20, dt=0.2, t_max=2.0, record_tau=taus)
    np.testing.assert_array_equal(r.tau, np.rint(taus / 0.2) * 0.2)
    assert r.per_seed["train_loss"].shape == (1, 5)
    assert r.observables["train_loss"][1] == r.observables["train_loss"][2]
    log = simulate(alpha=1.0, ratio=2.0, dim=20, dt=0.2, t_max=2.0, n_records=50)
    assert log.tau[0] == 0 and log.tau[-1] == pytest.approx(2.0)
    assert np.all(np.diff(log.tau) > 0)
    # the same step on both grids gives the same state
    i = int(np.nonzero(np.isclose(log.tau, 1.2))[0][0])
    assert log.observables["test_loss"][i] == r.observables["test_loss"][3]


# ------------------------------------------------------------- determinism & files
def test_determinism_and_seed_convention():
    kw = dict(alpha=0.5, ratio=2.0, eps=0.2, noise=0.1, dim=20, width=30, t_max=3.0, n_records=8, batch=7)
    a = simulate(**kw, seeds=2, seed=4)
    b = simulate(**kw, seeds=2, seed=4)
    c = simulate(**kw, seeds=1, seed=5)
    for name in OBSERVABLES:
        assert np.array_equal(a.per_seed[name], b.per_seed[name])
        assert np.array_equal(a.per_seed[name][1], c.per_seed[name][0])  # run k is seed + k
        np.testing.assert_allclose(a.observables[name], a.per_seed[name].mean(axis=0), rtol=1e-14)
        np.testing.assert_allclose(a.std[name], a.per_seed[name].std(axis=0, ddof=1), rtol=1e-12, atol=1e-300)
    assert not np.array_equal(a.per_seed["train_loss"][0], a.per_seed["train_loss"][1])


def test_save_load_round_trip_and_info(tmp_path):
    from dmft.cli import main

    r = simulate(alpha=2.0, ratio=1.5, dim=16, width=math.inf, t_max=2.0, seeds=2, n_records=6,
                 lazy_reference=True)
    path = r.save(tmp_path / "sim.h5")
    back = SimulationResult.load(path)
    assert back.parameters == r.parameters
    assert back.parameters["width"] == math.inf and back.parameters["batch"] is None
    np.testing.assert_array_equal(back.tau, r.tau)
    for name in OBSERVABLES:
        np.testing.assert_array_equal(back.observables[name], r.observables[name])
        np.testing.assert_array_equal(back.std[name], r.std[name])
        np.testing.assert_array_equal(back.per_seed[name], r.per_seed[name])
    for group in ("observables", "std", "per_seed"):
        assert set(back.lazy[group]) == {"train_loss", "test_loss"}
        for key, value in r.lazy[group].items():
            np.testing.assert_array_equal(back.lazy[group][key], value)
    np.testing.assert_array_equal(back.diverged_at, [np.nan, np.nan])
    import h5py

    with h5py.File(path, "r") as f:
        # /observables holds the mean curves only; the seed sd and the runs have groups of their own
        assert set(f["observables"]) == {"tau", *OBSERVABLES}
        for key in ("train_loss", "test_loss", "spike"):
            assert f[f"std/{key}"].shape == (r.tau.size,), key
            assert f[f"per_seed/{key}"].shape == (2, r.tau.size), key
        np.testing.assert_array_equal(f["per_seed/test_loss"][1], r.per_seed["test_loss"][1])
        assert f["lazy_reference/observables/test_loss"].shape == (r.tau.size,)
        assert f["lazy_reference/per_seed/test_loss"].shape == (2, r.tau.size)
        assert f.attrs["kind"] == "simulation"
    out = CliRunner().invoke(main, ["info", str(path)])
    assert out.exit_code == 0, out.output
    assert "simulation" in out.output and "alpha = 2.0" in out.output and "ratio = 1.5" in out.output
    assert "summary" not in back.parameters
    text = back.summary()
    assert "train loss" in text and "test loss" in text and "lazy" in text


def test_solve_and_simulate_share_names_and_defaults():
    """The quantities both commands take have the same option names and the same defaults."""
    from dmft.cli import solve as solve_cmd
    from dmft.cli import simulate as simulate_cmd

    solve_opts = {p.name: p for p in solve_cmd.params}
    sim_opts = {p.name: p for p in simulate_cmd.params}
    for name in ("alpha", "ratio", "eps", "noise", "dim", "t_max", "seed"):
        assert name in solve_opts and name in sim_opts, name
    for name in ("eps", "noise", "dim", "seed"):
        assert solve_opts[name].default == sim_opts[name].default, name
    assert sim_opts["t_max"].default == 12.0  # solve: None, meaning 12 for the two-layer model
    assert "Default: 12 (two-layer)" in solve_opts["t_max"].help
    assert solve_opts["dt"].default == 0.2 and "default --dt 0.2" in sim_opts["dt"].help
    import inspect

    sig = inspect.signature(simulate)
    assert sig.parameters["dim"].default == 200 and sig.parameters["t_max"].default == 12.0


def test_summary_labels_sd_and_se_says_never_and_counts_records():
    """The summary names the seed sd as sd and gives SE = sd/sqrt(seeds); a loss that never halves
    reads "never" (not nan); the record count is the stored one, with the merged duplicates named."""
    r = simulate(alpha=1.0, ratio=2.0, dim=20, t_max=3.0, seeds=2, n_records=200)
    text = r.summary()
    assert "nan" not in text
    sd = r.std["test_loss"][-1]
    assert f"seed sd {sd:.2g}, SE = sd/√2 = {sd / np.sqrt(2):.2g}" in text
    assert "first below half of it: never, up to τ = 3" in text  # the test loss does not halve by tau = 3 at alpha = 1
    assert np.isnan(r.first_below("test_loss"))
    n = len(r.tau)
    assert n == 16  # 15 steps: tau = 0 and each step once
    assert f"{n} records" in text and f"of 201 asked, {201 - n} fell on an already recorded whole step" in text


def test_cli_simulate_end_to_end(tmp_path):
    from dmft.cli import main

    path = tmp_path / "cli.h5"
    out = CliRunner().invoke(main, ["simulate", "--alpha", "1", "--ratio", "2", "--dim", "12", "--width", "20",
                                    "--t-max", "2", "--records", "5", "--quiet", "--out", str(path)])
    assert out.exit_code == 0, out.output
    assert "final test loss" in out.output and path.exists()
    back = SimulationResult.load(path)
    assert back.parameters["width"] == 20 and back.parameters["dim"] == 12


# ------------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(alpha=-1.0), "alpha"),
        (dict(alpha=0.0), "alpha"),
        (dict(ratio=0.0), "ratio"),
        (dict(ratio=1e-4), "ratio"),  # P = round(ratio D) = 0
        (dict(eps=-0.1), "eps"),
        (dict(noise=-1.0), "noise"),
        (dict(dim=0), "dim"),
        (dict(dim=2.5), "dim"),
        (dict(width=0), "width"),
        (dict(width=3.5), "width"),
        (dict(width="wide"), "width"),
        (dict(dt=0.1, eta=1.0), "dt"),
        (dict(dt=-0.1), "dt"),
        (dict(eta=0.0), "eta"),
        (dict(t_max=0.0), "t_max"),
        (dict(t_max=float("nan")), "t_max"),
        (dict(batch=0), "batch"),
        (dict(batch=10_000), "batch"),
        (dict(seeds=0), "seeds"),
        (dict(n_records=0), "n_records"),
        (dict(record_tau=[0.0, -1.0]), "record_tau"),
        (dict(record_tau=[1.0, 0.5]), "record_tau"),
        (dict(record_tau=[0.0, 1e6]), "record_tau"),
        (dict(dim=100_000), "dim"),  # memory check: P x D and D x D arrays of hundreds of GiB
        (dict(dim=2000, width=10**6), "dim"),  # explicit N x D and P x N arrays
    ],
)
def test_bad_inputs_raise_parameter_error(kwargs, name):
    base = dict(alpha=1.0, ratio=2.0, dim=20, t_max=1.0)
    base.update(kwargs)
    with pytest.raises(ParameterError, match=f"invalid {name}"):
        simulate(**base)


def test_memory_message_is_clear():
    with pytest.raises(ParameterError, match="GiB"):
        simulate(alpha=1.0, ratio=2.0, dim=100_000)


def test_cli_bad_alpha_is_usage_error():
    from dmft.cli import main

    out = CliRunner().invoke(main, ["simulate", "--alpha", "-1", "--ratio", "1"])
    assert out.exit_code == 2
    assert "invalid alpha=-1.0" in out.output and "0 < alpha <= 1e4" in out.output
    assert "Traceback" not in out.output


def test_divergence_is_reported_not_hidden():
    with pytest.warns(RuntimeWarning, match="diverged"):
        r = simulate(alpha=1.0, ratio=2.0, eps=0.1, dim=20, dt=3.0, t_max=300.0, n_records=20)
    assert np.isnan(r.observables["train_loss"][-1])
    assert r.diverged_seeds == [0] and np.isfinite(r.diverged_at[0])
    assert "DIVERGED: seed 0 at tau = " in r.summary()


def test_cli_simulate_stops_a_diverging_seed_and_exits_nonzero(tmp_path):
    """dt = 0.6 at ratio 5.5 is beyond Euler stability (dt < 0.49): each seed's run is marked diverged at
    its tau, its records from then on are NaN, every kept record is finite and below the bound, the file
    is written and loads, and the command exits 1 naming the seeds; a stable run exits 0."""
    from dmft.cli import main
    from dmft.params import DIVERGENCE_BOUND
    from dmft.io import load

    path = tmp_path / "div.h5"
    with pytest.warns(RuntimeWarning, match="diverged"):
        out = CliRunner().invoke(main, ["simulate", "--alpha", "1", "--eps", "0.02", "--ratio", "5.5", "--dt", "0.6",
                                        "--dim", "50", "--seeds", "2", "--t-max", "30", "--quiet", "--out", str(path)])
    assert out.exit_code == 1, out.output
    assert "diverged: seed 0 at tau = " in out.output and "seed 1 at tau = " in out.output
    r = load(path)
    assert r.diverged_seeds == [0, 1]
    for k in range(2):
        t_div = r.diverged_at[k]
        assert 0 < t_div <= 30
        for name in ("train_loss", "test_loss"):
            row = r.per_seed[name][k]
            kept = r.tau < t_div
            assert np.all(np.isfinite(row[kept])) and np.all(np.abs(row[kept]) < DIVERGENCE_BOUND)
            assert np.all(np.isnan(row[r.tau > t_div]))
    assert np.isnan(r.observables["train_loss"][-1])
    ok = CliRunner().invoke(main, ["simulate", "--alpha", "1", "--eps", "0.02", "--ratio", "5.5", "--dt", "0.4",
                                   "--dim", "50", "--seeds", "2", "--t-max", "30", "--quiet"])
    assert ok.exit_code == 0, ok.output
    assert "DIVERGED" not in ok.output and "final train loss: 0." in ok.output


# ------------------------------------------------------------ training-set moments, control-variate seed mean
def test_training_set_moments_are_recorded_saved_and_recomputed(tmp_path):
    r = simulate(alpha=1.0, ratio=2.0, eps=0.02, dim=30, dt=0.4, t_max=2.0, seeds=5, seed=11, noise=0.1)
    assert set(r.data_moments) == {"u2", "u4", "u6", "y2"} and r.data_moments["u4"].shape == (5,)
    # train loss at tau = 0 is (1/P) sum y^2 (f = 0 at initialisation), without noise (u^2/2)^2 = m4 / 4
    np.testing.assert_allclose(r.per_seed["train_loss"][:, 0], r.data_moments["y2"], rtol=1e-12)
    clean = simulate(alpha=1.0, ratio=2.0, eps=0.02, dim=30, dt=0.4, t_max=2.0, seeds=5, seed=11)
    np.testing.assert_allclose(clean.per_seed["train_loss"][:, 0], clean.data_moments["u4"] / 4, rtol=1e-12)
    path = tmp_path / "sim.h5"
    r.save(path)
    back = SimulationResult.load(path)
    for k in r.data_moments:
        np.testing.assert_array_equal(back.data_moments[k], r.data_moments[k])
    # a simulation file without its moments group (written through dmft.io): they are recomputed from the seeds
    from dmft.io import read_h5, write_h5

    tree = read_h5(path)
    del tree["data_moments"]
    attrs = tree.pop("attrs")
    write_h5(path, kind="simulation", parameters=tree.pop("parameters"), data=tree,
             attrs={k: v for k, v in attrs.items() if k in ("wall_time_s", "seeding")})
    old = SimulationResult.load(path)
    for k in r.data_moments:
        np.testing.assert_allclose(old.data_moments[k], r.data_moments[k], rtol=1e-12)


def test_control_variate_seed_mean_is_exact_at_tau0_and_unbiased():
    """The m4 control variate against an independent estimate of the same expectation.

    At tau = 0 the train loss is m4/4 and E[m4] = 3, so the estimate is exactly 0.75 with zero error
    while the plain mean misses it by its sampling error.  At tau > 0 the estimate from 24 seeds must
    agree with the plain mean of 240 other seeds within 3 combined standard errors, and its error
    must be smaller than the plain one (the trajectory follows m4)."""
    kw = dict(alpha=1.0, ratio=4.0, eps=0.02, dim=40, dt=0.2, t_max=3.0, record_tau=[0.0, 1.0, 3.0])
    small = simulate(seeds=24, seed=0, **kw)
    mean, se = small.seed_mean("train_loss")
    plain, plain_se = small.seed_mean("train_loss", control_variate=False)
    assert abs(mean[0] - 0.75) < 1e-12 and se[0] < 1e-12
    assert abs(plain[0] - 0.75) > 1e-4 and plain_se[0] > 1e-2
    big = simulate(seeds=240, seed=1000, **kw)
    ref, ref_se = big.seed_mean("train_loss", control_variate=False)
    for j in (1, 2):
        assert se[j] < 0.5 * plain_se[j]
        assert abs(mean[j] - ref[j]) < 3 * math.hypot(se[j], ref_se[j]), (j, mean[j], ref[j], se[j], ref_se[j])
    # fewer than 4 seeds or no moments: the plain mean
    tiny = simulate(seeds=3, seed=0, **kw)
    np.testing.assert_array_equal(tiny.seed_mean("train_loss")[0], tiny.seed_mean("train_loss", False)[0])
