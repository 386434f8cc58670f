"""Where the example scripts write: ``out/figures/`` (gitignored) unless asked otherwise.

``--figures`` refreshes the committed figures in ``examples/figures/`` and the committed tables in
``data/``; ``--out-dir DIR`` writes both to DIR instead of ``out/figures/``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMITTED_FIGURES = ROOT / "examples" / "figures"
COMMITTED_DATA = ROOT / "data"
DPI = 150


def add_output_options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--out-dir", default=str(ROOT / "out" / "figures"),
                    help="directory for the figure and table (default: out/figures, gitignored)")
    ap.add_argument("--figures", action="store_true",
                    help="refresh the committed figure in examples/figures/ and table in data/ instead")


def figure_path(args: argparse.Namespace, name: str) -> Path:
    path = (COMMITTED_FIGURES if args.figures else Path(args.out_dir)) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def table_path(args: argparse.Namespace, name: str) -> Path:
    path = (COMMITTED_DATA if args.figures else Path(args.out_dir)) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
