"""The package layout: one ``dmft`` namespace, and machinery that never imports the science."""
import subprocess
import sys

SOLVER_MODULES = ("anderson", "causal", "checkpoint", "fixed_point", "gaussian", "grid", "hdf5", "locking", "multistep",
                  "result", "state",
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


def test_the_d_infinity_dmft_never_imports_its_finite_size_extension():
    # the finite-size variant builds on the D -> inf core and registers itself; the core's modules
    # name neither dmft.two_layer.finite_size nor dmft.two_layer.finite_size_problem
    import ast
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1] / "dmft" / "two_layer"
    for name in ("core", "data_side", "problem", "readouts", "settings", "sweep_state"):
        tree = ast.parse((root / f"{name}.py").read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not any(m and m.startswith("finite_size") for m in imported), (name, imported)


def test_a_finite_size_setting_builds_the_registered_variant():
    from dmft.params import TwoLayerModel
    from dmft.two_layer import TwoLayerDMFT, TwoLayerProblem
    from dmft.two_layer.finite_size_problem import FiniteSizeProblem

    model = TwoLayerModel(1.0, 5.5, 0.02)
    assert type(TwoLayerProblem(model, TwoLayerDMFT(t_max=0.8, nodes=2, samples=2))) is TwoLayerProblem
    p = TwoLayerProblem(model, TwoLayerDMFT(t_max=0.8, nodes=2, samples=2, finite_size=True))
    assert type(p) is FiniteSizeProblem and "C_q" in p.kernel_names
