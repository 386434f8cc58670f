"""The model family: Hermite targets, label noise and weight decay in the simulator and the DMFT.

Independent references: the closed-form gradient descent / gradient flow of linear regression with weight
decay through the Marchenko-Pastur law (eps = 0, where the student is linear and the target's parts other than
He_1 act as label noise), the quadratic teacher's formulas (the default target, bit for bit), Monte Carlo, and
networks averaged over seeds."""
import math

import numpy as np
import pytest

from dmft import simulate, solve
from dmft.lazy import kernel_flow, quadratic_population_loss
from dmft.marchenko_pastur import filtered_losses, losses
from dmft.networks import ExplicitNetwork, ReducedNetwork, make_problem
from dmft.params import ParameterError, TwoLayerModel
from dmft.simulation_result import control_variate_mean
from dmft.solvers.grid import TimeGrid
from dmft.target import (DEFAULT_TARGET, check_target, evaluate, irreducible_loss, norm2, parse_target,
                         tail_moment)
from dmft.two_layer.flow import FlowProblem
from dmft.two_layer.readouts import population_test_loss

MIXED = (0.3, 0.8, 0.4, 0.2)


def test_targets_are_hermite_series():
    u = np.random.default_rng(0).standard_normal(400_000)
    g = evaluate(MIXED, u)
    he = [np.ones_like(u), u, u**2 - 1, u**3 - 3 * u]
    np.testing.assert_allclose(g, sum(c * h for c, h in zip(MIXED, he)), rtol=1e-12, atol=1e-12)
    # E[g^2] = sum k! c_k^2 (Monte Carlo, 4 SE)
    se = np.std(g**2) / math.sqrt(u.size)
    assert abs(np.mean(g**2) - norm2(MIXED)) < 4 * se
    assert irreducible_loss(MIXED) == pytest.approx(6 * 0.04)
    assert check_target("t", [0.5, 0, 0.5, 0, 0]) == DEFAULT_TARGET
    assert parse_target("0.5,0,0.5") == DEFAULT_TARGET
    for bad in ("0.5,x", "1,1,1,1,1,1,1,1", "200", ""):
        with pytest.raises(ParameterError, match="target"):
            parse_target(bad)
    # the tail a quadrature on |u| <= 4.5 drops, against Monte Carlo beyond 3 (where it is large enough to see)
    tail = np.where(np.abs(u) > 3.0, g**2, 0.0)
    assert abs(np.mean(tail) - tail_moment(MIXED, 3.0)) < 4 * np.std(tail) / math.sqrt(u.size)


def test_the_default_target_is_the_quadratic_teacher_bit_for_bit():
    """Every formula the target enters reduces, for (1/2, 0, 1/2), to the quadratic teacher's to the last bit."""
    rng = np.random.default_rng(1)
    u = rng.standard_normal(1000) * 2
    assert np.array_equal(evaluate(DEFAULT_TARGET, u), 0.5 * u**2)
    alpha, eps, dim = 0.7, 0.4, 50
    Cz, s, Cb = rng.uniform(0.5, 2, 20), rng.uniform(0, 1, 20), rng.uniform(0, 1, 20)
    a = alpha * eps / 2
    c1 = 0.5 - a * (s - 1.0 / dim)
    c0 = -a * (Cz - 1.0)
    quadratic = (c1 + c0 - a * Cb) ** 2 + 2 * c1**2 + alpha**2 * Cb + 2 * a**2 * Cb**2
    assert np.array_equal(population_test_loss(alpha, eps, dim, Cz, s, Cb), quadratic)
    # the networks' test loss and the lazy reference's
    pr = make_problem(30, 60, 0.1, np.random.default_rng(2))
    net = ReducedNetwork(pr, alpha=1.0, eps=0.3, eta=6.0)
    for _ in range(3):
        net.step()
    S, g = net.quadratic_form()
    B = 0.5 * np.outer(pr.beta, pr.beta) - 0.5 * 1.0 * 0.3 * S
    assert net.test_loss() == quadratic_population_loss(B, 1.0 * g)
    kf = kernel_flow(pr.X, pr.y, 0.3, [0.0, 1.0, 2.0], beta=pr.beta)
    G = pr.X @ pr.X.T
    sq, uu, bb = np.einsum("ij,ij->i", pr.X, pr.X), pr.X @ pr.beta, float(pr.beta @ pr.beta)
    for j in range(3):
        c = kf.coefficients[j]
        trB = 0.5 * bb - 0.09 * float(c @ sq)
        frob = 0.25 * bb * bb - 0.09 * float(c @ (uu * uu)) + 0.3**4 * float(c @ ((G * G) @ c))
        old = (trB / 30) ** 2 + 2.0 * frob / 30**2 + float(c @ (G @ c)) / 30
        assert abs(kf.test_loss[j] - old) <= 1e-15 * old


def test_population_test_loss_of_a_general_target_matches_monte_carlo():
    alpha, eps, dim, Cz, s, Cb, mu = 0.8, 0.5, 40, 1.2, 0.7, 0.3, 0.45
    rng = np.random.default_rng(3)
    n = 2_000_000
    u, mp = rng.standard_normal(n), rng.standard_normal(n) * math.sqrt(Cb)
    m = mu * u + mp
    a = alpha * eps / 2
    f = alpha * m + a * (m * m + Cz - 1 + (s - 1 / dim) * u * u)
    err2 = (f - evaluate(MIXED, u)) ** 2
    ref = population_test_loss(alpha, eps, dim, Cz, s, Cb, mu, MIXED)
    assert abs(np.mean(err2) - ref) < 4 * np.std(err2) / math.sqrt(n)


def test_networks_test_loss_of_a_general_target_matches_monte_carlo():
    pr = make_problem(20, 60, 0.0, np.random.default_rng(4), target=MIXED)
    net = ReducedNetwork(pr, alpha=1.0, eps=0.4, eta=4.0)
    for _ in range(5):
        net.step()
    x = np.random.default_rng(5).standard_normal((400_000, 20)) / math.sqrt(20)
    err2 = (net.predict(x) - pr.clean_target(x)) ** 2
    assert abs(np.mean(err2) - net.test_loss()) < 4 * np.std(err2) / math.sqrt(x.shape[0])


def test_weight_decay_in_the_networks_is_one_factor_per_step():
    """Explicit and reduced engines agree to round-off with weight decay and a general target, and one step is
    W <- (1 - h omega) W + (the gradient step at the old W)."""
    D, P, N, h, om = 12, 30, 7, 0.2, 0.3
    pr = make_problem(D, P, 0.1, np.random.default_rng(6), target=MIXED)
    W0 = np.random.default_rng(7).standard_normal((N, D))
    ex = ExplicitNetwork(pr, 1.0, 0.3, h * D, W0, weight_decay=om)
    red = ReducedNetwork(pr, 1.0, 0.3, h * D, W0=W0, weight_decay=om)
    plain = ExplicitNetwork(pr, 1.0, 0.3, h * D, W0)
    for _ in range(4):
        before = ex.W.copy()
        plain.W = before.copy()
        plain.b = ex.b.copy()
        plain._full = None
        plain.step()
        ex.step()
        red.step()
        np.testing.assert_allclose(ex.W, (1 - h * om) * before + (plain.W - before), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ex.outputs(), red.outputs(), rtol=1e-10, atol=1e-12)
    assert ex.test_loss() == pytest.approx(red.test_loss(), rel=1e-10)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_linear_student_is_gradient_descent_of_linear_regression(weight_decay):
    """eps = 0: the student is linear, f = alpha b.x; the target's He_1 part is the signal and the rest acts as
    label noise of variance E[g^2] - c_1^2, the constant and the quadratic and cubic parts are a floor.  The
    uniform-grid DMFT is exactly gradient descent of linear regression with weight decay (closed form through
    Marchenko-Pastur).  Measured 3e-7 with the quadrature on |u| <= 6.5 (4e-3 at the default 4.5: the cubic
    part's tail beyond u_max, reported as dropped_target_moment)."""
    ratio, h = 2.0, 0.2
    r = solve(alpha=1.0, ratio=ratio, eps=0.0, target=MIXED, weight_decay=weight_decay, dt=h, t_max=8.0, nodes=24,
              samples=2, replicas=1, u_max=6.5)
    noise2 = norm2(MIXED) - MIXED[1] ** 2
    train, error = filtered_losses(ratio, MIXED[1], math.sqrt(noise2), r.observables["tau"], dt=h,
                                   weight_decay=weight_decay)
    assert np.max(np.abs(r.observables["train_loss"] - train)) < 2e-6
    assert np.max(np.abs(r.observables["test_loss"] - (error + noise2))) < 2e-6
    assert r.observables["mean_overlap"][-1] > 0.5  # the He_1 part is learned along beta


def test_weight_decay_closed_form_reduces_to_gradient_flow():
    tau = np.linspace(0.0, 10.0, 11)
    train, test = losses(3.0, 0.4, tau)
    train2, error = filtered_losses(3.0, 1.0, 0.4, tau)
    np.testing.assert_allclose(train2, train, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(error + 0.16, test, rtol=1e-13, atol=1e-15)
    # gradient descent with steps h approaches the flow like h
    d1 = np.max(np.abs(filtered_losses(3.0, 1.0, 0.4, tau, dt=0.1, weight_decay=0.2)[1]
                       - filtered_losses(3.0, 1.0, 0.4, tau, weight_decay=0.2)[1]))
    d2 = np.max(np.abs(filtered_losses(3.0, 1.0, 0.4, tau, dt=0.05, weight_decay=0.2)[1]
                       - filtered_losses(3.0, 1.0, 0.4, tau, weight_decay=0.2)[1]))
    assert 1.7 < d1 / d2 < 2.3


def test_flow_dmft_with_a_general_target_and_weight_decay_converges_to_gradient_flow():
    """The implicit multistep DMFT (trapezoid) at eps = 0 against the exact gradient flow with weight decay:
    second order, measured 1.0e-2 / 2.8e-3 (train) and 3.1e-3 / 1.0e-3 (test) at h = 0.2 / 0.1 (ratio 2, tau <= 10)."""
    ratio, om = 2.0, 0.1
    noise2 = norm2(MIXED) - MIXED[1] ** 2
    errs = []
    for n in (50, 100):
        p = FlowProblem(TwoLayerModel(1.0, ratio, 0.0, target=MIXED, weight_decay=om), TimeGrid.uniform(10.0, n),
                        scheme="cn", nodes=24, samples=0, u_max=6.5)
        obs = p.solve()
        assert p.message is None
        train, error = filtered_losses(ratio, MIXED[1], math.sqrt(noise2), obs["tau"], weight_decay=om)
        errs.append((np.max(np.abs(obs["train_loss"] - train)), np.max(np.abs(obs["test_loss"] - error - noise2))))
    assert errs[1][0] < 4e-3 and errs[1][1] < 1.5e-3
    assert errs[0][0] / errs[1][0] > 3.2 and errs[0][1] / errs[1][1] > 2.6


def test_weight_decay_to_zero_is_continuous():
    kw = dict(alpha=1.0, ratio=2.0, eps=0.2, target=MIXED, noise=0.1, dt=0.2, t_max=3.0, nodes=6, samples=8,
              replicas=1)
    base = solve(**kw).observables
    for om in (1e-3, 1e-5):
        r = solve(**kw, weight_decay=om).observables
        for k in ("train_loss", "test_loss", "mean_overlap"):
            # the change is first order in omega: at most ~ omega tau times the curve's scale
            assert np.max(np.abs(r[k] - base[k])) < 10 * om, (om, k)


def test_test_loss_reaches_the_floor_plus_what_is_not_yet_learned():
    """Learnable case: a linear student (eps = 0) at P/D = 20 learns the He_1 part; the rest of the target is its
    floor sum_{k != 1} k! c_k^2 (the degree >= 3 floor plus the constant and He_2 parts it cannot represent), and
    acting as label noise of variance sigma^2 = that floor it adds the variance lambda sigma^2 / (1 - lambda) of
    ridgeless regression as tau -> inf (lambda = 1/ratio): at tau = 60 the test loss is within 1e-3 of
    sigma^2 / (1 - lambda).  With a quadratic student (eps > 0) the test loss never goes below the degree >= 3
    floor sum_{k>=3} k! c_k^2."""
    target, ratio = (0.2, 0.6, 0.3, 0.2), 20.0
    r = solve(alpha=1.0, ratio=ratio, eps=0.0, target=target, dt=0.4, t_max=60.0, nodes=24, samples=2, replicas=1,
              u_max=6.5)
    sigma2, lam = norm2(target) - target[1] ** 2, 1.0 / ratio
    assert abs(r.observables["test_loss"][-1] - sigma2 / (1 - lam)) < 1e-3
    rich = solve(alpha=0.5, ratio=ratio, eps=0.5, target=target, dt=0.1, t_max=8.0, nodes=8, samples=8,
                 replicas=1)
    test = rich.observables["test_loss"]
    assert np.all(test > irreducible_loss(target)) and test[-1] < 0.5 * test[0]


@pytest.mark.slow
def test_dmft_with_target_noise_and_weight_decay_agrees_with_networks():
    """alpha 1, eps 0.1, P/D 2, g = 0.2 + 0.7 He_1 + 0.5 He_2 + 0.15 He_3, sigma 0.2, omega 0.05, h 0.2, tau <= 4,
    D = 400, 16 networks: train and test loss and mu_b within 4 combined standard errors at every time after
    tau = 0 (measured: largest 0.6 SE train, 2.2 SE test, 1.4 SE mu_b)."""
    kw = dict(alpha=1.0, ratio=2.0, eps=0.1, noise=0.2, target=(0.2, 0.7, 0.5, 0.15), weight_decay=0.05)
    r = solve(**kw, dt=0.2, t_max=4.0, dim=400, mc_tol=0.004)
    s = simulate(**kw, dim=400, dt=0.2, t_max=4.0, seeds=16, seed=50, record_tau=r.observables["tau"])
    for k in ("train_loss", "test_loss", "mean_overlap"):
        mean, se_sim = s.seed_mean(k)  # with the label moment (1/P) sum y^2 as control variate
        se = np.hypot(se_sim, r.errors["mc"][k])[1:]
        z = np.abs(r.observables[k] - mean)[1:] / se
        assert np.max(z) < 4.0, (k, np.max(z))


@pytest.mark.slow
def test_lazy_limit_with_a_general_target_is_kernel_gradient_flow():
    """As alpha grows the DMFT with target (0.3, 0.5, 0.5, 0.2) approaches NTK kernel gradient flow on that target
    (on 8 data sets at D = 800, the same Euler step; their mean with the label moment (1/P) sum y^2 as control
    variate, SE 0.008), with an O(1/alpha) error of its own.  Measured: largest test-loss deviation 0.084 / 0.008 /
    0.003 at alpha = 10 / 100 / 1000."""
    target, eps, ratio, h, t_max = (0.3, 0.5, 0.5, 0.2), 0.5, 2.0, 0.2, 4.0
    runs = {a: solve(alpha=a, ratio=ratio, eps=eps, target=target, dt=h, t_max=t_max, dim=10**6, nodes=16,
                     samples=16, replicas=1, u_max=6.0).observables for a in (10.0, 100.0, 1000.0)}
    tau = runs[10.0]["tau"]
    flows, label_moments = [], []
    for s in range(8):
        prob = make_problem(800, int(ratio * 800), 0.0, np.random.default_rng(s), target=target)
        flows.append(kernel_flow(prob.X, prob.y, eps, tau, beta=prob.beta, dt=h, target=target).test_loss)
        label_moments.append(np.mean(prob.y**2))
    flow, se = control_variate_mean(np.array(flows), np.array(label_moments), norm2(target))
    se = se.max()
    dev = {a: np.abs(r["test_loss"] - flow).max() for a, r in runs.items()}
    assert dev[100.0] < 0.3 * dev[10.0]
    assert dev[1000.0] < 4 * se + 0.003
    d1 = np.abs(runs[10.0]["test_loss"] - runs[1000.0]["test_loss"]).max()
    d2 = np.abs(runs[100.0]["test_loss"] - runs[1000.0]["test_loss"]).max()
    assert 6 < d1 / d2 < 14


def test_compare_refuses_files_that_differ_in_target_or_weight_decay(tmp_path):
    from click.testing import CliRunner

    from dmft.cli import main

    base = ["solve", "--alpha", "1", "--ratio", "2", "--t-max", "0.4", "--nodes", "2", "--samples", "2",
            "--replicas", "1", "--quiet"]
    for name, extra in (("a", []), ("b", ["--target", "0.5,0.3,0.5"]), ("c", ["--weight-decay", "0.1"]),
                        ("d", ["--target", "0.5,0,0.5,0"])):
        out = CliRunner().invoke(main, base + extra + ["--out", str(tmp_path / f"{name}.h5")])
        assert out.exit_code == 0, out.output
    for other, word in (("b", "target"), ("c", "weight_decay")):
        out = CliRunner().invoke(main, ["compare", str(tmp_path / "a.h5"), str(tmp_path / f"{other}.h5"), "-o",
                                        str(tmp_path / "f.png")])
        assert out.exit_code != 0 and word in out.output and "Traceback" not in out.output, out.output
    # trailing zero coefficients are the same function, hence the same file parameters
    out = CliRunner().invoke(main, ["compare", str(tmp_path / "a.h5"), str(tmp_path / "d.h5"), "-o",
                                    str(tmp_path / "f.png")])
    assert out.exit_code == 0, out.output


def test_sweep_takes_weight_decay_and_targets_as_axes():
    from click.testing import CliRunner

    from dmft.cli import _target_list
    from dmft.sweep import point_name

    assert _target_list(None, None, "0.5,0,0.5;0.5,0.3,0.5") == [(0.5, 0.0, 0.5), (0.5, 0.3, 0.5)]
    a = point_name({"alpha": 1.0, "target": [0.5, 0.3, 0.5]}, ["target"])
    b = point_name({"alpha": 1.0, "target": (0.5, 0.3, 0.5)}, ["target"])
    assert a == b and a.startswith("target0.5,0.3,0.5-")
    # the defaults spelled out (as the command line passes them) or left out name the same file
    assert (point_name({"alpha": 1.0, "target": [0.5, 0, 0.5], "weight_decay": 0.0, "batch_fraction": 1.0}, [])
            == point_name({"alpha": 1.0}, []) != point_name({"alpha": 1.0, "weight_decay": 0.1}, []))
    from dmft.cli import main

    out = CliRunner().invoke(main, ["sweep", "--help"])
    assert "--weight-decay" in out.output and "--target" in out.output


def test_finite_size_dmft_takes_weight_decay_continuously():
    """--finite-size with weight decay: omega -> 0 is continuous and differentiable (the change at omega = 2e-4 is
    twice that at 1e-4, to 5 %; the bulk C_z moves by 0.0016 at 1e-4, about 2 omega tau C_z), and the decay lowers
    the weight-side variances (the bulk C_z and the spike s).  Its agreement with networks is in docs/validation.md
    (g2, omega 0.01: test-loss deviation 0.0057 at D = 800)."""
    kw = dict(alpha=1.0, ratio=5.5, eps=0.1, dt=0.4, t_max=4.0, dim=200, finite_size=True, nodes=4, samples=4,
              replicas=1)
    base = solve(**kw).observables
    d1, d2 = ({k: solve(**kw, weight_decay=om).observables[k] - base[k] for k in ("train_loss", "test_loss", "bulk")}
              for om in (1e-4, 2e-4))
    for k in d1:
        assert np.max(np.abs(d2[k] - 2 * d1[k])) < 0.05 * np.max(np.abs(d2[k])), k
    large = solve(**kw, weight_decay=0.1).observables
    assert np.all(large["bulk"][1:] < base["bulk"][1:]) and large["spike"][-1] < base["spike"][-1]
