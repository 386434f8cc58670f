"""MkDocs hook: publish the example figures (examples/figures/*.png) under figures/examples/,
so that the pages show the figures the example scripts write, without a copy in docs/."""
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent


def on_files(files, config):
    for png in sorted((ROOT / "examples" / "figures").glob("*.png")):
        files.append(File.generated(config, f"figures/examples/{png.name}", abs_src_path=str(png)))
    return files
