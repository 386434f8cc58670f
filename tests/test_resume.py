"""--resume continues only the run that is in the file: any difference that changes the answer
(parameters, --replicas, --datasets, the method) is refused in one line naming the old and the
new value; a finished run is reported as complete and left untouched; a missing file is refused."""
import os

from click.testing import CliRunner

from cli import main
from dmft.io import verify

TINY = ["solve", "--alpha", "1", "--ratio", "2", "--eps", "0.1", "--dim", "50", "--t-max", "0.8", "--nodes", "4",
        "--samples", "4", "--quiet"]


def _run(*args):
    return CliRunner().invoke(main, [*TINY, *args])


def _identity(path):
    st = os.stat(path)
    return st.st_ino, st.st_mtime_ns


def _one_line_error(res, *needles):
    assert res.exit_code == 1, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: cannot resume"), res.output
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_resume_refuses_other_replicas_and_datasets_and_keeps_a_finished_run(tmp_path):
    out = tmp_path / "fs.h5"
    first = _run("--finite-size", "--replicas", "2", "--out", str(out))
    assert first.exit_code == 0, first.output
    assert f"wrote {out}" in first.output
    before = _identity(out)
    _one_line_error(_run("--finite-size", "--replicas", "4", "--out", str(out), "--resume"),
                    "replicas: file 2, now 4")
    _one_line_error(_run("--finite-size", "--datasets", "2", "--out", str(out), "--resume"),
                    "datasets: file 0, now 2")
    _one_line_error(_run("--replicas", "2", "--out", str(out), "--resume"), "finite_size: file True, now False")
    again = _run("--finite-size", "--replicas", "2", "--out", str(out), "--resume")
    assert again.exit_code == 0, again.output
    assert f"{out} is complete; nothing to do" in again.output and "wrote" not in again.output
    assert _identity(out) == before  # nothing written
    verify(out)


def test_an_unfinished_iteration_is_not_resumed_as_a_sweep(tmp_path):
    out = tmp_path / "it.h5"
    stopped = _run("--method", "iterate", "--max-iter", "2", "--out", str(out))
    assert stopped.exit_code == 1 and "max iter after 2 iterations" in stopped.output, stopped.output
    before = _identity(out)
    _one_line_error(_run("--out", str(out), "--resume"), "unfinished --method iterate run (MAX_ITER after 2 iterations)",
                    "method: file 'iterate', now 'sweep'", "pass --method iterate")
    assert _identity(out) == before
    done = _run("--method", "iterate", "--out", str(out), "--resume")
    assert done.exit_code == 0 and f"wrote {out}" in done.output, done.output
    again = _run("--method", "iterate", "--out", str(out), "--resume")
    assert again.exit_code == 0 and "is complete; nothing to do" in again.output, again.output
    # a sweep's result is no iteration's answer either
    swept = tmp_path / "sw.h5"
    assert _run("--out", str(swept)).exit_code == 0
    _one_line_error(_run("--method", "iterate", "--out", str(swept), "--resume"),
                    "method: file 'sweep', now 'iterate'")


def test_resume_without_a_file_says_there_is_no_checkpoint(tmp_path):
    out = tmp_path / "none.h5"
    res = _run("--out", str(out), "--resume")
    assert res.exit_code == 1
    assert res.output.strip() == (f"Error: cannot resume: no checkpoint at {out} (no such file); run without resume "
                                  "(--resume) to start a new run")
    assert not out.exists()


def test_linear_resume_of_a_finished_run_writes_nothing(tmp_path):
    out = tmp_path / "lin.h5"
    args = ["solve", "--model", "linear", "--ratio", "2", "--steps", "40", "--t-max", "2", "--quiet", "--out", str(out)]
    assert CliRunner().invoke(main, args).exit_code == 0
    before = _identity(out)
    res = CliRunner().invoke(main, [*args, "--resume"])
    assert res.exit_code == 0 and "is complete; nothing to do" in res.output and "wrote" not in res.output
    assert _identity(out) == before


def test_an_existing_out_is_replaced_only_with_overwrite_and_only_when_complete(tmp_path):
    from dmft.io import load

    out = tmp_path / "lin.h5"
    base = ["solve", "--model", "linear", "--steps", "40", "--out", str(out), "--quiet"]
    assert CliRunner().invoke(main, base + ["--ratio", "2"]).exit_code == 0
    refused = CliRunner().invoke(main, base + ["--ratio", "3"])
    assert refused.exit_code == 2 and "--overwrite" in refused.output and load(out).parameters["ratio"] == 2.0
    # the new run checkpoints beside the old file (.lin.h5.new.h5) and replaces it when it ends
    replaced = CliRunner().invoke(main, base + ["--ratio", "3", "--overwrite", "--max-iter", "1",
                                                "--checkpoint-every", "1"])
    assert replaced.exit_code == 1  # not converged in one iteration: unsuccessful, and it replaced the file
    assert load(out).parameters["ratio"] == 3.0
    assert not list(tmp_path.glob(".lin.h5.new.h5"))
