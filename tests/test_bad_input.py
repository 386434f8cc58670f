"""Bad input on the command line: every case below exits nonzero with one error line, no traceback,
before any compute (each within 2 s, in-process)."""
import time

import pytest
from click.testing import CliRunner

from dmft.cli import main

M = ["--alpha", "1", "--ratio", "2"]

CASES = [
    # solve: the model
    ["solve", "--alpha", "nan", "--ratio", "2"],
    ["solve", "--alpha", "inf", "--ratio", "2"],
    ["solve", "--alpha", "-1", "--ratio", "2"],
    ["solve", "--alpha", "0", "--ratio", "2"],
    ["solve", "--alpha", "1e300", "--ratio", "2"],
    ["solve", "--alpha", "1", "--ratio", "0"],
    ["solve", "--alpha", "1", "--ratio", "abc"],
    ["solve", *M, "--eps", "-0.1"],
    ["solve", *M, "--eps", "1e300"],
    ["solve", *M, "--noise", "nan"],
    ["solve", *M, "--target", "0.5,0,abc"],
    ["solve", *M, "--target", "1,1,1,1,1,1,1,1"],
    ["solve", *M, "--target", "0.5,0,1e3"],
    ["solve", *M, "--target", "0.5,nan"],
    ["solve", *M, "--target", ""],
    ["solve", *M, "--weight-decay", "-0.1"],
    ["solve", *M, "--weight-decay", "1e3"],
    ["solve", *M, "--weight-decay", "6", "--dt", "0.2"],
    ["solve", *M, "--target", "0,1", "--finite-size"],
    ["solve", *M, "--batch-fraction", "0.5", "--finite-size"],
    ["solve", *M, "--batch-fraction", "0.5", "--grid", "adaptive"],
    ["solve", *M, "--batch-fraction", "0"],
    ["solve", *M, "--batch-fraction", "1.5"],
    ["simulate", *M, "--batch-fraction", "0.5", "--batch", "10"],
    # solve: the numerics
    ["solve", *M, "--dim", "0"],
    ["solve", *M, "--dim", "1e9"],
    ["solve", *M, "--dim", "10000000000000"],
    ["solve", *M, "--dt", "0"],
    ["solve", *M, "--dt", "1e300"],
    ["solve", *M, "--t-max", "-1"],
    ["solve", *M, "--t-max", "1e300"],
    ["solve", *M, "--t-max", "5000"],
    ["solve", *M, "--nodes", "0"],
    ["solve", *M, "--samples", "3"],
    ["solve", *M, "--samples", "-2"],
    ["solve", *M, "--u-max", "0"],
    ["solve", *M, "--seed", "-1"],
    ["solve", *M, "--seed", "99999999999999999999"],
    ["solve", *M, "--replicas", "0"],
    ["solve", *M, "--replicas", "1000"],
    ["solve", *M, "--datasets", "-1"],
    ["solve", *M, "--damping", "1"],
    ["solve", *M, "--damping", "nan"],
    ["solve", *M, "--tol", "0"],
    ["solve", *M, "--max-iter", "0"],
    ["solve", *M, "--checkpoint-every", "0"],
    ["solve", *M, "--method", "newton"],
    ["solve", *M, "--accel", "fast"],
    ["solve", *M, "--mc-tol", "0"],
    ["solve", *M, "--grid", "geometric"],
    ["solve", *M, "--grid", "adaptive", "--finite-size"],
    ["solve", *M, "--grid", "adaptive", "--datasets", "2"],
    ["solve", *M, "--grid", "adaptive", "--method", "iterate"],
    ["solve", *M, "--rtol", "0"],
    ["solve", *M, "--rtol", "0.5"],
    ["solve", "--model", "linear", "--ratio", "2", "--grid", "adaptive"],
    ["solve", "--ratio", "2"],
    ["solve", "--model", "linear", "--ratio", "2", "--steps", "0"],
    ["solve", "--model", "linear", "--ratio", "2", "--finite-size"],
    # solve: paths
    ["solve", *M, "--out", ""],
    ["solve", *M, "--out", "/sys/x.h5"],
    ["solve", *M, "--out", "{tmp}"],
    ["solve", *M, "--out", "{existing}"],
    ["solve", *M, "--resume"],
    # simulate
    ["simulate", *M, "--width", "0"],
    ["simulate", *M, "--width", "abc"],
    ["simulate", *M, "--seeds", "0"],
    ["simulate", *M, "--seeds", "1e20"],
    ["simulate", *M, "--records", "0"],
    ["simulate", *M, "--records", "1e20"],
    ["simulate", *M, "--seed", "1e20"],
    ["simulate", *M, "--dt", "0.2", "--eta", "1"],
    ["simulate", *M, "--dt", "1e300"],
    ["simulate", *M, "--batch", "0"],
    ["simulate", *M, "--t-max", "inf"],
    ["simulate", *M, "--out", "/sys/y.h5"],
    ["simulate", *M, "--out", ""],
    ["simulate", *M, "--target", "0.5;0"],
    ["simulate", *M, "--weight-decay", "0.1", "--lazy-reference"],
    ["simulate", *M, "--weight-decay", "20"],
    # sweep
    ["sweep", "--alpha", "1,nan", "--ratio", "2", "--outdir", "{tmp}/s"],
    ["sweep", "--alpha", "1", "--ratio", ",", "--outdir", "{tmp}/s"],
    ["sweep", *M, "--outdir", "{tmp}/s", "--scheduler", "http://127.0.0.1:8786"],
    ["sweep", *M, "--outdir", "{tmp}/s", "--scheduler", "tcp://127.0.0.1"],
    ["sweep", *M, "--outdir", "{tmp}/s", "--workers", "0"],
    ["sweep", *M, "--outdir", "{tmp}/s", "--fraction", "1"],
    ["sweep", *M, "--outdir", "{tmp}/s", "--sim-seeds", "-1"],
    ["sweep", *M, "--outdir", "{tmp}/s", "--nodes", "0"],
    ["sweep", *M, "--outdir", "{tmp}/s", "--target", "0.5,0,0.5;x"],
    ["sweep", *M, "--outdir", "{tmp}/s", "--weight-decay", "0,-1"],
    # compare and info
    ["compare", "{tmp}/missing.h5", "-o", "{tmp}/f.png"],
    ["compare", "{existing}", "-o", "{tmp}/f.txt"],
    ["compare", "{existing}", "-o", "{tmp}/f.png", "--dpi", "1"],
    ["compare", "{garbage}", "-o", "{tmp}/f.png"],
    ["info", "{tmp}/missing.h5"],
    ["info", "{tmp}"],
    ["info", "{garbage}"],
]


@pytest.mark.parametrize("args", CASES, ids=[" ".join(c) for c in CASES])
def test_bad_command_line_is_one_error_line_before_any_compute(args, tmp_path):
    existing = tmp_path / "existing.h5"
    existing.write_bytes(b"")  # a file that exists (an empty one)
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not an HDF5 file" * 100)
    args = [a.format(tmp=tmp_path, existing=existing, garbage=garbage) for a in args]
    start = time.perf_counter()
    out = CliRunner().invoke(main, args + (["--quiet"] if args[0] in ("solve", "simulate", "sweep") else []))
    elapsed = time.perf_counter() - start
    assert out.exit_code not in (0, None), out.output
    assert isinstance(out.exception, SystemExit), repr(out.exception)
    assert "Traceback" not in out.output
    errors = [line for line in out.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, out.output
    assert elapsed < 2.0, elapsed


def test_the_corpus_covers_every_command():
    assert len(CASES) >= 40
    assert {c[0] for c in CASES} == {"solve", "simulate", "sweep", "compare", "info"}
