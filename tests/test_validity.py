"""The --finite-size guard against the validity map (docs/finite-size.md, section 7).

The map (data/validity_map.json, examples/validity_map.py) holds, for every mapped point and D, the largest
deviation from N = inf networks of the finite-size and the D -> inf DMFT in combined standard errors.  The
guard must warn exactly where those measurements say the finite-size DMFT is worse.
"""
import json
from pathlib import Path

import h5py
import pytest

import dmft
from dmft.params import TwoLayerModel
from dmft.two_layer.validity import MAPPED_DIMS, VALIDITY_MAP, finite_size_caution

MAP = json.loads((Path(__file__).resolve().parent.parent / "data" / "validity_map.json").read_text())


def _worse(entry):
    """Worse than D -> inf beyond the errors: at some D, for some loss, the finite-size DMFT's largest deviation
    exceeds the D -> inf one's by more than the combined SE at its maximum, or it has no usable sampling runs."""
    for dim in MAPPED_DIMS:
        e = entry[str(dim)]
        if "unusable" in e["finite_size"]:
            return True
        for loss in ("train_loss", "test_loss"):
            fs = e["finite_size"][loss]
            inf = e["d_inf"][loss]["max_dev"] if "unusable" not in e["d_inf"] else float("inf")
            if fs["max_dev"] > inf + fs["combined_se_at_max"]:
                return True
    return False


def test_map_covers_the_phase_diagram():
    points = [e["parameters"] for e in MAP["points"].values()]
    assert len(points) >= 8
    alphas, epss, ratios = ([p[k] for p in points] for k in ("alpha", "eps", "ratio"))
    assert min(alphas) <= 0.1 and max(alphas) >= 10
    assert min(epss) <= 0.02 and max(epss) >= 0.3
    assert min(ratios) <= 1.5 and max(ratios) >= 6


@pytest.mark.parametrize("name", sorted(MAP["points"]))
def test_guard_warns_wherever_the_map_shows_finite_size_worse(name):
    entry = MAP["points"][name]
    p = entry["parameters"]
    model = TwoLayerModel(p["alpha"], p["ratio"], p["eps"])
    assert entry["verdict"] == ("worse" if _worse(entry) else "helps")
    if _worse(entry):
        for dim in MAPPED_DIMS:
            assert finite_size_caution(model, dim) is not None, (name, dim)


def test_guard_is_silent_at_most_points_where_finite_size_helps():
    """The guard is not a blanket warning: it is silent at most of the mapped points where the map shows the
    finite-size DMFT helping."""
    silent = [name for name, e in MAP["points"].items() if not _worse(e) and all(
        finite_size_caution(TwoLayerModel(e["parameters"]["alpha"], e["parameters"]["ratio"], e["parameters"]["eps"]),
                            dim) is None for dim in MAPPED_DIMS)]
    helps = [name for name, e in MAP["points"].items() if not _worse(e)]
    assert len(silent) >= 5 and len(silent) >= len(helps) - 2, (silent, helps)


def test_guard_warns_below_the_mapped_dimensions():
    c1 = TwoLayerModel(1.0, 5.5, 0.02)
    assert finite_size_caution(c1, 400) is None
    assert "below the mapped D" in finite_size_caution(c1, 100)


def test_warning_reaches_the_summary_and_the_file(tmp_path):
    out = tmp_path / "fs.h5"
    with pytest.warns(RuntimeWarning, match="validity map"):
        res = dmft.solve(alpha=1.0, ratio=5.5, eps=0.02, dim=60, dt=0.2, t_max=1.0, nodes=4, samples=4, replicas=1,
                         finite_size=True, out=out)
    assert VALIDITY_MAP in res.summary()
    with h5py.File(out, "r") as f:
        message = f["solver"]["message"][()]
    assert VALIDITY_MAP in (message.decode() if isinstance(message, bytes) else str(message))


def test_no_warning_without_finite_size(recwarn):
    dmft.solve(alpha=1.0, ratio=5.5, eps=0.02, dim=60, dt=0.2, t_max=1.0, nodes=4, samples=4, replicas=1)
    assert not [w for w in recwarn if "validity map" in str(w.message)]


def test_command_line_warns_and_prints_the_warning_in_the_summary():
    from click.testing import CliRunner

    from dmft.cli import main

    with pytest.warns(RuntimeWarning, match="validity map"):
        res = CliRunner().invoke(main, ["solve", "--alpha", "1", "--ratio", "5.5", "--dim", "60", "--dt", "0.2",
                                        "--t-max", "1", "--nodes", "4", "--samples", "4", "--replicas", "1",
                                        "--finite-size", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "warning: --finite-size is outside the region where it was measured to help" in res.output
    assert VALIDITY_MAP in res.output
