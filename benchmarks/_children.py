"""Runs each configuration of a benchmark in its own Python process (so that each peak RSS is its own)."""
import json
import subprocess
import sys


def run_children(child: str, case: dict, configs: dict) -> dict:
    """{name: the JSON the ``child`` program prints last} for each of ``configs``; the child reads the case and
    the configuration as JSON from argv[1] and argv[2]."""
    rows = {}
    for name, config in configs.items():
        out = subprocess.run([sys.executable, "-c", child, json.dumps(case), json.dumps(config)],
                             capture_output=True, text=True, check=True).stdout
        rows[name] = json.loads(out.strip().splitlines()[-1])
    return rows
