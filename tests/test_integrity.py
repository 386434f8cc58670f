"""Files cannot be silently wrong or lost: every file carries a checksum that every reader verifies,
damaged files give one line and no traceback, and concurrent or killed writers leave an intact file."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from click.testing import CliRunner

import dmft
from dmft.cli import main
from dmft.io import FileFormatError, read_h5

FLIPS = 200


def _same_tree(a, b):
    assert set(a) == set(b)
    for key in a:
        if isinstance(a[key], dict):
            _same_tree(a[key], b[key])
        else:
            np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    base = tmp_path_factory.mktemp("files")
    res = dmft.solve(alpha=1.0, ratio=2.0, eps=0.1, dim=50, t_max=1.2, dt=0.2, nodes=4, samples=4, replicas=1)
    sim = dmft.simulate(alpha=1.0, ratio=2.0, eps=0.1, dim=20, dt=0.2, t_max=1.2, seeds=2)
    return {"result": dmft.save(res, base / "result.h5"), "simulation": sim.save(base / "sim.h5")}


@pytest.mark.parametrize("which", ["result", "simulation"])
def test_every_flipped_byte_is_refused_in_one_line_or_read_unchanged(files, which, tmp_path):
    path = files[which]
    blob = bytearray(path.read_bytes())
    original = read_h5(path)
    rng = np.random.default_rng(7 if which == "result" else 8)
    runner = CliRunner()
    refused = 0
    for k, offset in enumerate(rng.choice(len(blob), size=FLIPS, replace=False)):
        bad = bytearray(blob)
        bad[offset] ^= 1 << int(rng.integers(8))
        damaged = tmp_path / f"{which}-{k}.h5"
        damaged.write_bytes(bytes(bad))
        try:
            back = read_h5(damaged)
        except FileFormatError as exc:
            refused += 1
            message = str(exc)
            assert "\n" not in message and str(damaged) in message
            cli = runner.invoke(main, ["info", str(damaged)])
            assert cli.exit_code != 0 and isinstance(cli.exception, SystemExit), cli.output
            assert cli.output.count("\n") == 1 and "Traceback" not in cli.output
            with pytest.raises(FileFormatError):
                dmft.load(damaged)
        else:
            _same_tree(back, original)  # the flipped byte was not part of the content
        damaged.unlink()
    assert refused == FLIPS  # the user block's digest covers every byte of the file


_WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from dmft.io import write_h5
    path, value, repeats = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    data = {"observables": {"tau": np.arange(200.0), "train_loss": np.full(200, value)},
            "kernels": {"K": np.full((200, 200), value)}}
    print("ready", flush=True)
    for _ in range(repeats):
        write_h5(path, kind="test", parameters={"value": value}, data=data)
""")


def _writer(path, value, repeats):
    return subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(value), str(repeats)],
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(dmft.__file__))),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _intact(path):
    tree = read_h5(path)
    value = tree["parameters"]["value"]
    assert np.all(tree["kernels"]["K"] == value) and np.all(tree["observables"]["train_loss"] == value)
    return value


def test_two_processes_writing_one_file_leave_one_complete_file(tmp_path):
    target = tmp_path / "same.h5"
    procs = [_writer(target, v, 30) for v in (1.0, 2.0)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert _intact(target) in (1.0, 2.0)
    assert [f.name for f in tmp_path.iterdir()] == ["same.h5"]  # no temporary file left behind


def test_a_writer_killed_mid_write_leaves_the_previous_file_intact(tmp_path):
    target = tmp_path / "killed.h5"
    first = _writer(target, 1.0, 1)
    assert first.wait(timeout=120) == 0
    for delay in (0.05, 0.2, 0.5):
        p = _writer(target, 2.0, 1000)
        p.stdout.readline()  # the writer is running
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=60)
        assert _intact(target) in (1.0, 2.0)
