"""Figures: the comparison plot draws exactly the files' data (lines, bands, error bars, lazy
reference), refuses files of different parameters unless forced, and the phase map shows the
index's delays.  Files are synthetic (written with dmft.io.write_h5), except one test on real
(tiny) solve and simulate results."""
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from dmft.cli import main
from dmft.io import write_h5
from dmft.plot import ParameterMismatchError, compare, load_curves, phase, phase_grid, save_figure

MODEL = dict(alpha=1.0, ratio=5.5, eps=0.02, noise=0.0, dt=0.4)


def _dmft_file(path, tau=None, **overrides):
    tau = np.linspace(0.0, 8.0, 21) if tau is None else tau
    params = {"model": "two-layer", **MODEL, "dim": 200, "t_max": float(tau[-1]), **overrides}
    obs = {"tau": tau, "train_loss": 0.75 * np.exp(-tau / 3), "test_loss": 0.75 / (1 + tau / 4),
           "spike": 0.005 * np.exp(tau / 2), "bulk": 1 + 0 * tau, "mean_norm": 0.1 * tau}
    # replica errors: the preferred band where finite (all NaN = one replica: fall back to the batch error)
    errors = {"mc": {"train_loss": np.nan * tau, "test_loss": 0.02 + 0 * tau, "spike": 0.001 + 0 * tau},
              "batch": {"train_loss": 0.01 + 0.001 * tau}}
    data = {"observables": obs, "errors": errors, "diagnostics": {"dropped_u_mass": np.array(1e-6)}}
    write_h5(path, "dmft-two-layer", params, data)
    return path, data


def _sim_file(path, seeds=4, lazy=True, **overrides):
    tau = np.concatenate([[0.0], np.geomspace(0.4, 8.0, 60)])
    params = {**MODEL, "dim": 100, "width": math.inf, "seeds": seeds, "P": 550, **overrides}
    rng = np.random.default_rng(1)
    obs, std = {"tau": tau}, {}
    for name, curve in (("train_loss", 0.7 * np.exp(-tau / 3)), ("test_loss", 0.75 / (1 + tau / 4)),
                        ("spike", 0.01 * np.exp(tau / 2)), ("ntk_alignment", 0.01 + 0.001 * tau)):
        obs[name] = curve + 0.01 * rng.standard_normal(tau.size)
        std[name] = 0.02 + 0.01 * rng.random(tau.size)
    data = {"observables": obs, "std": std}
    if lazy:
        data["lazy_reference"] = {"observables": {"train_loss": 0.7 - 0.01 * tau, "test_loss": 0.8 - 0.001 * tau},
                                  "std": {"train_loss": 0 * tau, "test_loss": 0 * tau}}
    write_h5(path, "simulation", params, data)
    return path, data


def _lines(ax):
    return {line.get_gid(): line for line in ax.lines if line.get_gid()}


def test_compare_draws_exactly_the_files_data(tmp_path):
    dpath, ddata = _dmft_file(tmp_path / "theory.h5")
    dobs, derr = ddata["observables"], ddata["errors"]
    spath, sdata = _sim_file(tmp_path / "sim.h5", seeds=4)
    fig = compare(dpath, [spath])
    ax_loss, ax_ord, ax_ntk = fig.axes[0], fig.axes[1], fig.axes[2]
    assert ax_loss.get_xscale() == "log" and ax_ord.get_xscale() == "log" and ax_ntk.get_xscale() == "log"
    loss, order = _lines(ax_loss), {**_lines(ax_ord), **_lines(ax_ntk)}
    assert set(loss) == {"dmft:0:train_loss", "dmft:0:test_loss", "sim:0:train_loss", "sim:0:test_loss",
                         "lazy:0:train_loss", "lazy:0:test_loss"}
    # one quantity per y-axis: the spike and the NTK alignment each on their own panel and label
    assert set(_lines(ax_ord)) == {"dmft:0:spike", "sim:0:spike"}
    assert set(_lines(ax_ntk)) == {"sim:0:ntk_alignment"}
    assert ax_ord.get_ylabel() == "spike s = C∥/D" and ax_ntk.get_ylabel() == "NTK alignment"
    # legends below the axes, clear of the data
    fig.draw_without_rendering()
    for ax in (ax_loss, ax_ord, ax_ntk):
        assert ax.get_legend().get_window_extent().y1 <= ax.get_window_extent().y0 + 1
    # DMFT lines: every record with tau > 0 (tau = 0 cannot sit on a log axis), values as stored
    pos = dobs["tau"] > 0
    for name in ("train_loss", "test_loss"):
        np.testing.assert_array_equal(loss[f"dmft:0:{name}"].get_xdata(), dobs["tau"][pos])
        np.testing.assert_array_equal(loss[f"dmft:0:{name}"].get_ydata(), dobs[name][pos])
    np.testing.assert_array_equal(order["dmft:0:spike"].get_ydata(), dobs["spike"][pos])
    # simulation markers: seed means; lazy reference dashed
    sobs, spos = sdata["observables"], sdata["observables"]["tau"] > 0
    for name in ("train_loss", "test_loss"):
        np.testing.assert_array_equal(loss[f"sim:0:{name}"].get_xdata(), sobs["tau"][spos])
        np.testing.assert_array_equal(loss[f"sim:0:{name}"].get_ydata(), sobs[name][spos])
        assert loss[f"sim:0:{name}"].get_linestyle() == "None"
        np.testing.assert_array_equal(loss[f"lazy:0:{name}"].get_ydata(), sdata["lazy_reference"]["observables"][name][spos])
        assert loss[f"lazy:0:{name}"].get_linestyle() == "--"
    for name in ("spike", "ntk_alignment"):
        np.testing.assert_array_equal(order[f"sim:0:{name}"].get_ydata(), sobs[name][spos])
    # error bars: half-length std / sqrt(seeds), at the marked records
    bars = [c for c in ax_loss.collections if c.__class__.__name__ == "LineCollection"]
    segs = [np.asarray(s) for c in bars for s in c.get_segments()]
    err = sdata["std"]["test_loss"][spos] / 2.0
    y = sobs["test_loss"][spos]
    found = 0
    for s in segs:
        x0, (ya, yb) = s[0, 0], sorted(s[:, 1])
        k = np.nonzero(sobs["tau"][spos] == x0)[0]
        if k.size and np.isclose(ya, y[k[0]] - err[k[0]]) and np.isclose(yb, y[k[0]] + err[k[0]]):
            found += 1
    assert found >= 20  # ~40 marked records, each with its bar
    # Monte-Carlo bands: train +- its batch error (its mc error is all NaN), test and spike +- their mc
    # errors; none for curves without errors
    for ax, name, kind in ((ax_loss, "train_loss", "batch"), (ax_loss, "test_loss", "mc"), (ax_ord, "spike", "mc")):
        (band,) = [c for c in ax.collections if c.get_gid() == f"band:0:{name}"]
        verts = band.get_paths()[0].vertices
        err = derr[kind][name]
        upper, lower = dobs[name][pos] + err[pos], dobs[name][pos] - err[pos]
        for xv, lo, hi in zip(dobs["tau"][pos], lower, upper):
            at = verts[np.isclose(verts[:, 0], xv), 1]
            assert np.isclose(at.min(), lo) and np.isclose(at.max(), hi)
    assert not [c for c in ax_ord.collections if c.get_gid() == "band:0:bulk"]
    # labels carry the parameters
    assert "α=1" in fig._suptitle.get_text() and "P/D=5.5" in fig._suptitle.get_text()
    assert "h=0.4" in fig._suptitle.get_text()
    labels = [t.get_text() for t in ax_loss.get_legend().get_texts()]
    assert any("DMFT D=200" in t for t in labels) and any("sim D=100 N=∞, 4 seeds" in t for t in labels)


def test_compare_result_objects_equal_their_observables(tmp_path):
    import dmft

    res = dmft.solve(alpha=1.0, ratio=2.0, eps=0.1, dim=50, t_max=1.2, dt=0.2, nodes=4, samples=4)
    sim = dmft.simulate(alpha=1.0, ratio=2.0, eps=0.1, dim=20, dt=0.2, t_max=1.2, seeds=2,
                        record_tau=res.observables["tau"], lazy_reference=True)
    fig = compare(res, sim)
    lines = _lines(fig.axes[0])
    tau = res.observables["tau"]
    np.testing.assert_array_equal(lines["dmft:0:test_loss"].get_ydata(), res.observables["test_loss"][tau > 0])
    np.testing.assert_array_equal(lines["sim:0:train_loss"].get_ydata(), sim.observables["train_loss"][sim.tau > 0])
    np.testing.assert_array_equal(lines["lazy:0:test_loss"].get_ydata(),
                                  sim.lazy["observables"]["test_loss"][sim.tau > 0])
    # the same through files
    dmft.save(res, tmp_path / "r.h5")
    sim.save(tmp_path / "s.h5")
    lines2 = _lines(compare(tmp_path / "r.h5", tmp_path / "s.h5").axes[0])
    for gid in lines:
        np.testing.assert_array_equal(lines2[gid].get_ydata(), lines[gid].get_ydata())
    assert load_curves(tmp_path / "s.h5").errors["train_loss"] == pytest.approx(sim.std["train_loss"] / np.sqrt(2))


def test_mismatched_parameters_are_refused_unless_forced(tmp_path):
    dpath, _ = _dmft_file(tmp_path / "theory.h5")
    other, _ = _sim_file(tmp_path / "other.h5", alpha=0.5, dt=0.2)
    with pytest.raises(ParameterMismatchError) as info:
        compare(dpath, other)
    msg = str(info.value)
    assert "alpha (theory.h5: 1, other.h5: 0.5)" in msg and "dt (theory.h5: 0.4, other.h5: 0.2)" in msg
    assert "ratio (" not in msg and "eps (" not in msg and "noise (" not in msg and "force=True" in msg
    # a parameter absent from one file is a difference too
    nonoise, _ = _dmft_file(tmp_path / "nonoise.h5", noise=None)
    with pytest.raises(ParameterMismatchError, match="noise"):
        compare([dpath, nonoise])
    # forced: drawn, the differing parameters go into the labels
    fig = compare(dpath, other, force=True)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("α=0.5" in t and "h=0.2" in t for t in labels) and any("α=1" in t for t in labels)
    assert "forced" in fig._suptitle.get_text()
    # the D is not a checked parameter (finite-size comparisons are the point)
    compare(dpath, _sim_file(tmp_path / "d.h5", dim=400)[0])


def test_cli_compare_writes_png_and_pdf_and_refuses_mismatch(tmp_path):
    dpath, _ = _dmft_file(tmp_path / "theory.h5")
    spath, _ = _sim_file(tmp_path / "sim.h5")
    bad, _ = _sim_file(tmp_path / "bad.h5", eps=0.5)
    runner = CliRunner()
    r = runner.invoke(main, ["compare", str(dpath), str(spath), "-o", str(tmp_path / "f.png")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = runner.invoke(main, ["compare", str(dpath), str(spath), "-o", str(tmp_path / "f.pdf")])
    assert r.exit_code == 0 and (tmp_path / "f.pdf").read_bytes()[:5] == b"%PDF-"
    r = runner.invoke(main, ["compare", str(dpath), str(bad), "-o", str(tmp_path / "g.png")])
    assert r.exit_code == 2 and "eps (theory.h5: 0.02, bad.h5: 0.5)" in r.output and "--force" in r.output
    assert not (tmp_path / "g.png").exists()
    r = runner.invoke(main, ["compare", str(dpath), str(bad), "--force", "-o", str(tmp_path / "g.png")])
    assert r.exit_code == 0 and (tmp_path / "g.png").exists()
    r = runner.invoke(main, ["compare", str(dpath), "-o", str(tmp_path / "g.jpg")])
    assert r.exit_code == 2 and ".png or .pdf" in r.output
    r = runner.invoke(main, ["compare", str(tmp_path / "missing.h5"), "-o", str(tmp_path / "h.png")])
    assert r.exit_code == 1 and "no such file" in r.output
    r = runner.invoke(main, ["compare", "--help"])
    assert "tau = eta t / D" in r.output and "--force" in r.output


def _index(points, **extra):
    return {"format": "dmft-sweep", "version": 1, "grid": {"alpha": [], "ratio": []}, "fraction": 0.5,
            "points": points, **extra}


def _point(alpha, ratio, delay=None, status="done", t_train=2.0, bound=None, **params):
    derived = None if status == "failed" else {
        "t_train": t_train, "t_test": None if delay is None else delay * t_train, "delay": delay,
        "delay_lower_bound": bound, "fraction": 0.5}
    return {"parameters": {"alpha": alpha, "ratio": ratio, "eps": 0.02, **params}, "file": f"{alpha}_{ratio}.h5",
            "status": status, "error": "ParameterError: boom" if status == "failed" else None, "derived": derived}


def test_phase_map_shows_the_index_delays(tmp_path):
    pts = [_point(0.1, 1, 3.0), _point(1.0, 1, 1.5, status="unsuccessful"), _point(0.1, 4, status="failed"),
           _point(1.0, 4, None, bound=12.5)]
    (tmp_path / "index.json").write_text(json.dumps(_index(pts)))
    g = phase_grid(tmp_path)
    assert g.xs == [0.1, 1.0] and g.ys == [1.0, 4.0]
    np.testing.assert_array_equal(g.delay, [[3.0, 1.5], [np.nan, np.nan]])
    assert list(g.notes[1]) == ["failed", "> 12.5"] and g.notes[0, 1] == "1.5*"  # * = stopped early
    fig = phase(tmp_path / "index.json")
    ax = fig.axes[0]
    (mesh,) = [c for c in ax.collections if c.get_gid() == "phase:delay"]
    assert mesh.norm.__class__.__name__ == "LogNorm"
    assert mesh.norm.vmin == pytest.approx(1.5) and mesh.norm.vmax == pytest.approx(3.0)
    np.testing.assert_array_equal(np.ma.filled(mesh.get_array(), np.nan).ravel(), g.delay.ravel())
    assert len([p for p in ax.patches if p.get_gid() == "phase:nan"]) == 2
    texts = {t.get_text() for t in ax.texts}
    assert {"3", "1.5*", "failed", "> 12.5"} <= texts
    assert "stopped early" in ax.get_xlabel()
    # a further varying parameter must be fixed
    pts2 = pts + [_point(0.1, 1, 5.0, eps=0.1)]
    (tmp_path / "index.json").write_text(json.dumps(_index(pts2)))
    with pytest.raises(ValueError, match="eps in"):
        phase(tmp_path)
    assert phase_grid(tmp_path, select={"eps": 0.1}).delay.tolist() == [[5.0]]
    r = CliRunner().invoke(main, ["phase", str(tmp_path), "--where", "eps=0.02", "-o", str(tmp_path / "p.png")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    r = CliRunner().invoke(main, ["phase", str(tmp_path), "-o", str(tmp_path / "q.png")])
    assert r.exit_code == 2 and "--where" in r.output


def test_save_figure_default_dpi_is_150(tmp_path):
    import struct

    from matplotlib.figure import Figure

    path = save_figure(Figure(figsize=(2.0, 1.0)), tmp_path / "x.png")
    assert struct.unpack(">II", path.read_bytes()[16:24]) == (300, 150)  # PNG IHDR width, height


def test_save_figure_refuses_other_formats(tmp_path):
    from matplotlib.figure import Figure

    with pytest.raises(ValueError, match="png or .pdf"):
        save_figure(Figure(), tmp_path / "x.svg")


def test_compare_draws_the_training_set_band_beside_the_seed_spread(tmp_path):
    """A DMFT file with training-set quantiles (solve ... --datasets R) gets a band spanning
    exactly its q16..q84; the simulations then get mean +- seed sd; without quantiles neither."""
    tau = np.linspace(0.0, 8.0, 21)
    dpath, _ = _dmft_file(tmp_path / "theory.h5", tau=tau)
    spath, sdata = _sim_file(tmp_path / "sim.h5", seeds=4, lazy=False)
    assert not any((c.get_gid() or "").startswith(("datasets", "spread")) for c in compare(dpath, spath).axes[0].collections)
    from dmft.io import read_h5
    raw = read_h5(dpath)
    q16, q84 = raw["observables"]["test_loss"] - 0.05, raw["observables"]["test_loss"] + 0.07
    write_h5(tmp_path / "theory_ds.h5", "dmft-two-layer", raw["parameters"],
             {"observables": raw["observables"], "errors": raw["errors"],
              "dataset_bands": {"q16": {"test_loss": q16}, "q84": {"test_loss": q84}}})
    ax = compare(tmp_path / "theory_ds.h5", spath).axes[0]
    bands = {c.get_gid(): c for c in ax.collections if c.get_gid()}
    pos = tau > 0
    verts = bands["datasets:0:test_loss"].get_paths()[0].vertices
    assert np.allclose(sorted(set(np.round(verts[:, 1], 12))), sorted(set(np.round(np.r_[q16[pos], q84[pos]], 12))))
    sobs, spos = sdata["observables"], sdata["observables"]["tau"] > 0
    sv = bands["spread:0:test_loss"].get_paths()[0].vertices[:, 1]
    sd = sdata["std"]["test_loss"]
    lo, hi = (sobs["test_loss"] - sd)[spos], (sobs["test_loss"] + sd)[spos]
    assert np.isclose(sv.min(), lo.min()) and np.isclose(sv.max(), hi.max())


def test_compare_draws_simulations_as_the_control_variate_mean(tmp_path):
    """With 4 or more seeds the simulation markers are SimulationResult.seed_mean (regression on
    the training sets' m4, known mean 3), not the plain seed mean: at tau = 0 the train loss is
    m4 / 4 exactly, so the marker is 3/4 with a zero error bar, whereas the plain mean is off by
    its standard error.  --plain-mean / control_variate=False gives the plain mean back; the
    label says which; files and objects agree."""
    import dmft

    sim = dmft.simulate(alpha=1.0, ratio=2.0, eps=0.1, dim=20, dt=0.2, t_max=1.2, seeds=6,
                        record_tau=[0.0, 0.4, 0.8, 1.2])
    sim.save(tmp_path / "s.h5")
    for source in (sim, tmp_path / "s.h5"):
        cv = load_curves(source)
        assert cv.estimator == "m4 control variate"
        mean, se = sim.seed_mean("train_loss")
        np.testing.assert_allclose(cv.observables["train_loss"], mean, rtol=1e-12)
        np.testing.assert_allclose(cv.errors["train_loss"], se, rtol=1e-12)
        assert cv.observables["train_loss"][0] == pytest.approx(0.75, abs=1e-12) and cv.errors["train_loss"][0] < 1e-12
        assert abs(sim.observables["train_loss"][0] - 0.75) > 1e-4  # six training sets' plain mean is not 3/4
        np.testing.assert_allclose(cv.spread["test_loss"], sim.std["test_loss"])
        plain = load_curves(source, control_variate=False)
        assert plain.estimator == "seed mean"
        np.testing.assert_allclose(plain.observables["train_loss"], sim.observables["train_loss"])
        np.testing.assert_allclose(plain.errors["train_loss"], sim.std["train_loss"] / np.sqrt(6))
    ax = compare(tmp_path / "s.h5").axes[0]
    np.testing.assert_allclose(_lines(ax)["sim:0:train_loss"].get_ydata(), sim.seed_mean("train_loss")[0][sim.tau > 0])
    assert any("m₄ CV" in t.get_text() for t in ax.get_legend().get_texts())
    ax = compare(tmp_path / "s.h5", control_variate=False).axes[0]
    np.testing.assert_allclose(_lines(ax)["sim:0:train_loss"].get_ydata(), sim.observables["train_loss"][sim.tau > 0])
    assert not any("CV" in t.get_text() for t in ax.get_legend().get_texts())
    r = CliRunner().invoke(main, ["compare", str(tmp_path / "s.h5"), "--plain-mean", "-o", str(tmp_path / "p.png")])
    assert r.exit_code == 0, r.output


def test_cli_compare_warns_about_an_unsuccessful_result_and_still_plots(tmp_path):
    from click.testing import CliRunner

    from dmft.cli import main
    from dmft.two_layer import solve

    kw = dict(alpha=1.0, ratio=2.0, eps=0.1, dim=50, t_max=0.8, nodes=4, samples=4)
    bad, good = tmp_path / "stopped.h5", tmp_path / "good.h5"
    assert not solve(**kw, method="iterate", max_iter=2, out=bad).success
    assert solve(**kw, out=good).success
    r = CliRunner().invoke(main, ["compare", str(bad), str(good), "-o", str(tmp_path / "f.png")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "f.png").stat().st_size > 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"warning: {bad}: status MAX_ITER: maximum number of iterations")
    clean = CliRunner().invoke(main, ["compare", str(good), "-o", str(tmp_path / "g.png")])
    assert clean.exit_code == 0 and clean.stderr == ""
