"""The package layout: one ``dmft`` namespace, and machinery that never imports the science."""
import subprocess
import sys

SOLVER_MODULES = ("anderson", "causal", "checkpoint", "fixed_point", "gaussian", "grid", "hdf5", "locking", "result", "state",
                  "validation", "volterra")


def test_the_machinery_imports_no_model_module():
    code = ("import sys\n"
            + "".join(f"import dmft.solvers.{m}\n" for m in SOLVER_MODULES)
            + "print(sorted(m for m in sys.modules if m.startswith('dmft') and not m.startswith('dmft.solvers')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['dmft']"


def test_the_top_level_api_is_visible():
    import dmft

    for name in ("solve", "simulate", "load", "save", "compare", "TwoLayerModel", "LinearModel", "ParameterError"):
        assert name in dir(dmft)
        assert getattr(dmft, name) is not None
    import dmft.cli

    assert callable(dmft.cli.main)
