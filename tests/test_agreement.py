"""The agreement statistic (largest deviation in SE) and its exact-theory distribution, checked against
Monte Carlo with a known true mean."""
import numpy as np
import pytest

from dmft.agreement import max_deviation
from dmft.simulator import control_variate_mean


def _curves(rng, n, T=40, corr=0.9, u4=False):
    """n seeds of AR(1) curves (correlation corr between neighbouring times) around the true mean sin(t);
    with u4, each seed also carries a covariate of mean 3 that explains part of its level."""
    e = np.empty((n, T))
    e[:, 0] = rng.standard_normal(n)
    for j in range(1, T):
        e[:, j] = corr * e[:, j - 1] + np.sqrt(1 - corr**2) * rng.standard_normal(n)
    truth = np.sin(np.linspace(0, 3, T))
    if not u4:
        return truth, truth + 0.1 * e, None
    x = 3.0 + 0.3 * rng.standard_normal(n)
    return truth, truth + 0.1 * e + 0.2 * (x - 3.0)[:, None], x


def test_control_variate_mean_is_the_per_column_least_squares_intercept():
    # the simulator's estimate (vectorised over complete columns, one fit per column with missing
    # seeds) against an explicit least-squares fit of each column
    rng = np.random.default_rng(1)
    _, y, x = _curves(rng, 25, u4=True)
    y[3, 5] = np.nan  # one column with a missing seed takes the per-column path
    a, s = control_variate_mean(y, x)
    for j in range(y.shape[1]):
        ok = np.isfinite(y[:, j])
        A = np.column_stack([np.ones(ok.sum()), x[ok] - 3.0])
        coef, res, *_ = np.linalg.lstsq(A, y[ok, j], rcond=None)
        s2 = float(res[0]) / (ok.sum() - 2)
        assert a[j] == pytest.approx(coef[0], rel=1e-12, abs=1e-14)
        assert s[j] == pytest.approx(np.sqrt(s2 * np.linalg.inv(A.T @ A)[0, 0]), rel=1e-9)


@pytest.mark.parametrize("u4", [False, True])
@pytest.mark.slow
def test_exact_theory_pass_rate_and_p_values_match_monte_carlo(u4):
    # the true mean, compared with many independent sets of 40 seeds: the share of sets in which it
    # stays within 2 SE at every time is what the bootstrap predicts from one set, and its p-values
    # are close to uniform
    rng = np.random.default_rng(2)
    passed, predicted, pvals = [], [], []
    for _ in range(150):
        truth, y, x = _curves(rng, 40, u4=u4)
        r = max_deviation(truth, y, u4=x, bootstrap=300, seed=int(rng.integers(1 << 30)))
        passed.append(r["max_over_se"] <= 2.0)
        predicted.append(r["exact_theory"]["pass_rate"])
        pvals.append(r["exact_theory"]["p_value"])
    mc, boot = np.mean(passed), np.mean(predicted)
    # 150 sets: the Monte Carlo share has SE ~0.035
    assert 0.3 < mc < 0.95
    assert abs(mc - boot) < 0.1, (mc, boot)
    assert abs(np.mean(np.array(pvals) < 0.05) - 0.05) < 0.06
    assert abs(np.mean(np.array(pvals) < 0.5) - 0.5) < 0.13


def test_a_biased_theory_is_rejected_and_the_observed_figures_are_the_direct_ones():
    rng = np.random.default_rng(3)
    truth, y, _ = _curves(rng, 40)
    se = y.std(axis=0, ddof=1) / np.sqrt(40)
    r = max_deviation(truth + 4 * se.max(), y, bootstrap=500)
    assert r["max_over_se"] >= 4.0 - 1e-9
    assert r["exact_theory"]["p_value"] < 0.01
    direct = np.abs(truth + 4 * se.max() - y.mean(axis=0)) / se
    assert r["max_over_se"] == pytest.approx(direct.max())
    assert r["within_fraction"] == pytest.approx(np.mean(direct <= 2.0))


def test_theory_runs_add_their_error_and_are_calibrated():
    rng = np.random.default_rng(4)
    passed, predicted = [], []
    for _ in range(120):
        truth, y, _ = _curves(rng, 40)
        _, runs, _ = _curves(rng, 16)  # an exact but noisy theory: 16 runs around the truth
        r = max_deviation(None, y, theory_runs=runs, bootstrap=300, seed=int(rng.integers(1 << 30)))
        se_net = y.std(axis=0, ddof=1) / np.sqrt(40)
        se_th = runs.std(axis=0, ddof=1) / 4
        direct = np.abs(runs.mean(axis=0) - y.mean(axis=0)) / np.sqrt(se_net**2 + se_th**2)
        assert r["max_over_se"] == pytest.approx(direct.max())
        passed.append(r["max_over_se"] <= 2.0)
        predicted.append(r["exact_theory"]["pass_rate"])
    assert abs(np.mean(passed) - np.mean(predicted)) < 0.12


def test_bad_input_gets_a_clear_error():
    y = np.ones((5, 3)) + np.arange(15).reshape(5, 3) ** 2
    with pytest.raises(ValueError, match="seeds >= 3"):
        max_deviation(np.zeros(3), y[:2], bootstrap=0)
    with pytest.raises(ValueError, match="non-finite"):
        max_deviation(np.zeros(3), np.where(y > 100, np.nan, y), bootstrap=0)
    with pytest.raises(ValueError, match="theory has shape"):
        max_deviation(np.zeros(4), y, bootstrap=0)
    with pytest.raises(ValueError, match="u4 has shape"):
        max_deviation(np.zeros(3), y, u4=np.ones(4), bootstrap=0)
    with pytest.raises(ValueError, match="theory_runs"):
        max_deviation(None, y, theory_runs=np.ones((1, 3)), bootstrap=0)
    with pytest.raises(ValueError, match="bootstrap"):
        max_deviation(np.zeros(3), y, bootstrap=10)
    with pytest.raises(ValueError, match=">= 8 seeds"):
        max_deviation(np.zeros(3), y)
    r = max_deviation(np.zeros(3), y, bootstrap=0)  # the observed figures need no bootstrap
    assert r["exact_theory"] is None and r["max_over_se"] > 0


def test_against_a_real_simulation_and_the_compare_command(tmp_path):
    # the networks' own mean scores 0 SE (p = 1); the same curve moved by 6 of its largest SE is
    # rejected; `dmft compare` prints the figures for a DMFT file against a simulation file
    import dmft
    from click.testing import CliRunner

    from dmft.cli import main
    from dmft.agreement import against_simulation, describe

    res = dmft.solve(alpha=1.0, ratio=2.0, eps=0.1, dim=50, t_max=1.2, dt=0.2, nodes=4, samples=4)
    tau = res.observables["tau"]
    sim = dmft.simulate(alpha=1.0, ratio=2.0, eps=0.1, dim=20, dt=0.2, t_max=1.2, seeds=10, record_tau=tau)
    own = {k: sim.per_seed[k].mean(axis=0) for k in ("train_loss", "test_loss")}
    r = against_simulation(sim.tau, own, sim, control_variate=False, bootstrap=500)
    assert r["train_loss"]["max_over_se"] < 1e-9 and r["train_loss"]["exact_theory"]["p_value"] == 1.0
    se = sim.per_seed["train_loss"].std(axis=0, ddof=1) / np.sqrt(10)
    shifted = {"train_loss": own["train_loss"] + 6 * se[1:].max()}
    r = against_simulation(sim.tau, shifted, sim, control_variate=False, bootstrap=500)
    assert r["train_loss"]["max_over_se"] >= 6 - 1e-9 and r["train_loss"]["exact_theory"]["p_value"] < 0.01
    assert "an exact theory" in describe(r)[0]
    dmft.save(res, tmp_path / "r.h5")
    sim.save(tmp_path / "s.h5")
    out = CliRunner().invoke(main, ["compare", str(tmp_path / "r.h5"), str(tmp_path / "s.h5"),
                                    "-o", str(tmp_path / "f.png")])
    assert out.exit_code == 0, out.output
    assert "train_loss: largest deviation" in out.output and "95 % quantile" in out.output


def test_a_theory_with_sampling_runs_combines_their_error(tmp_path):
    # A finite-size solve stores its kept sampling runs; against_simulation must then use their mean and the
    # combined SE, i.e. give exactly max_deviation(theory_runs=...) on the runs read at the simulation's times,
    # and `dmft compare` must say so.  Runs that differ only by a constant offset pin the combined SE by hand.
    import dmft
    from click.testing import CliRunner

    from dmft.cli import main
    from dmft.agreement import against_simulation, describe

    res = dmft.solve(alpha=1.0, ratio=2.0, eps=0.1, dim=50, t_max=1.2, dt=0.2, nodes=4, samples=4, finite_size=True,
                     replicas=3)
    assert res.sampling_runs["train_loss"].shape == (3, res.observables["tau"].size)
    np.testing.assert_allclose(res.sampling_runs["train_loss"].mean(axis=0), res.observables["train_loss"],
                               rtol=1e-12)
    sim = dmft.simulate(alpha=1.0, ratio=2.0, eps=0.1, dim=20, dt=0.2, t_max=1.2, seeds=10,
                        record_tau=res.observables["tau"])
    own = sim.per_seed["train_loss"].mean(axis=0)
    se_net = sim.per_seed["train_loss"].std(axis=0, ddof=1) / np.sqrt(10)
    offsets = np.array([-1.0, 0.0, 1.0]) * 3 * se_net[1:].max()  # sd of the runs: 3 max SE; SE of their mean: sqrt(3)
    theory = {"train_loss": own + 2 * se_net[1:].max()}
    runs = {"train_loss": own[None] + 2 * se_net[1:].max() + offsets[:, None]}
    r = against_simulation(sim.tau, theory, sim, control_variate=False, bootstrap=500, theory_runs=runs)["train_loss"]
    live = sim.tau > 0
    direct = (2 * se_net[1:].max()) / np.sqrt(se_net[live] ** 2 + 3 * se_net[1:].max() ** 2)
    assert r["theory_runs"] == 3 and r["max_over_se"] == pytest.approx(direct.max())
    assert r["max_over_se"] < 2.0 * 0.6  # without the theory's error it would be 2 SE
    assert "combined with the theory's 3 sampling runs" in describe({"train_loss": r})[0]
    dmft.save(res, tmp_path / "r.h5")
    sim.save(tmp_path / "s.h5")
    out = CliRunner().invoke(main, ["compare", str(tmp_path / "r.h5"), str(tmp_path / "s.h5"), "-o",
                                    str(tmp_path / "f.png")])
    assert out.exit_code == 0, out.output
    assert "combined with the theory's 3 sampling runs" in out.output
