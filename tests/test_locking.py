"""One run owns an output file: a second writer of the same target, in another process, is
refused at once with one line naming the file, or waits for it with --wait."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dmft.io import verify
from dmft.solvers.locking import TargetBusyError, hold, is_held, lock_path

ROOT = Path(__file__).resolve().parents[1]
# a linear solve of ~5 s that writes its checkpoint after every iteration (the file appears early)
SLOW = ["solve", "--model", "linear", "--ratio", "2", "--steps", "500", "--checkpoint-every", "1", "--quiet"]


def _dmft(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "dmft.cli", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _holder(target):
    """Another process that holds the lock of ``target`` until its stdin closes."""
    code = ("import sys\nfrom dmft.solvers.locking import hold\n"
            f"with hold({str(target)!r}):\n    print('held', flush=True)\n    sys.stdin.read()\n")
    p = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_lock_is_reentrant_in_one_process_and_exclusive_across_processes(tmp_path):
    target = tmp_path / "x.h5"
    assert lock_path(target) == tmp_path / ".x.h5.lock"
    with hold(target):
        with hold(target):  # the command holds it, the writer it calls takes it again
            pass
    assert not is_held(target)
    holder = _holder(target)
    try:
        assert is_held(target)
        t0 = time.perf_counter()
        with pytest.raises(TargetBusyError, match=r"x\.h5: another run is writing this file"):
            with hold(target):
                pass
        assert time.perf_counter() - t0 < 1.0  # refused at once
        with pytest.raises(TargetBusyError, match="still held after 0.2 s"):
            with hold(target, wait=True, timeout=0.2):
                pass
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    with hold(target, wait=True, timeout=5):  # released when the holder exits
        pass


def test_checkpoint_writer_is_refused_while_another_process_owns_the_target(tmp_path):
    from dmft.linear import solve_linear

    out = tmp_path / "run.h5"
    holder = _holder(out)
    try:
        with pytest.raises(TargetBusyError, match="run.h5"):
            solve_linear(ratio=2.0, t_max=2.0, steps=20, out=out)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert not out.exists()  # refused before any compute or write
    assert solve_linear(ratio=2.0, t_max=2.0, steps=20, out=out).success
    verify(out)


@pytest.mark.slow
def test_two_cli_runs_on_one_target_refuse_or_wait(tmp_path):
    out = tmp_path / "run.h5"
    first = _dmft(*SLOW, "--out", str(out))
    deadline = time.time() + 60
    while not out.exists():  # the first checkpoint: the first run holds the lock
        assert first.poll() is None, first.communicate()
        assert time.time() < deadline
        time.sleep(0.05)
    t0 = time.perf_counter()
    second = _dmft(*SLOW, "--out", str(out), "--overwrite")
    _, err = second.communicate(timeout=60)
    refused_after = time.perf_counter() - t0
    assert first.poll() is None, "the first run ended before the second asked: the test did not overlap"
    assert second.returncode == 1
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert f"{out}: another run is writing this file" in err and "--wait" in err
    assert refused_after < 10  # interpreter start-up only; the solve takes longer
    waiting = _dmft(*SLOW, "--out", str(out), "--wait", "--overwrite")
    time.sleep(0.5)
    _, err1 = first.communicate(timeout=120)
    assert first.returncode == 0, err1
    first_done = time.time()
    log, err2 = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err2
    assert time.time() >= first_done and f"wrote {out}" in log
    verify(out)
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers == [".run.h5.lock", "run.h5"]  # no temporary file; the lock file is empty
    assert (tmp_path / ".run.h5.lock").stat().st_size == 0


def test_another_thread_of_the_holding_process_is_refused(tmp_path):
    import threading

    target = tmp_path / "t.h5"
    seen = []

    def other():
        try:
            with hold(target):
                seen.append("held")
        except TargetBusyError:
            seen.append("refused")

    with hold(target):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert seen == ["refused"]
