"""Settings defined once (dmft.solvers.settings): validation, keyword routing, signatures and
command-line options all come from the one field definition."""
import dataclasses
import inspect

import click
import pytest
from click.testing import CliRunner

from dmft.params import TwoLayerModel
from dmft.solvers.settings import click_options, defaults, setting, signature, split, validate
from dmft.solvers.validation import ParameterError, check_int, check_positive


@dataclasses.dataclass(frozen=True)
class _Grid:
    t_max: float = setting(12.0, "Final time in tau (> 0).", check=check_positive)
    nodes: int = setting(24, "Quadrature nodes, an integer in [1, 1000].",
                         check=lambda n, v: check_int(n, v, 1, 1000))
    method: str = setting("sweep", "sweep or iterate.", choices=("sweep", "iterate"))
    finite_size: bool = setting(False, "Add the finite-D terms.")

    def __post_init__(self):
        validate(self)


def test_validation_normalises_and_names_the_range():
    assert _Grid(nodes=3.0).nodes == 3 and isinstance(_Grid(nodes=3.0).nodes, int)
    with pytest.raises(ParameterError, match=r"nodes=1001.*\[1, 1000\]"):
        _Grid(nodes=1001)
    with pytest.raises(ParameterError, match="method='x'.*'sweep', 'iterate'"):
        _Grid(method="x")


def test_split_routes_keywords_and_refuses_unknown_names():
    model, grid, rest = split({"alpha": 1, "t_max": 3, "out": "f.h5"}, TwoLayerModel, _Grid, extra=("out",))
    assert model == {"alpha": 1} and grid == {"t_max": 3} and rest == {"out": "f.h5"}
    with pytest.raises(ParameterError, match="unknown setting 'tmax'.*t_max"):
        split({"tmax": 3}, TwoLayerModel, _Grid)


def test_signature_shows_every_default():
    sig = signature(TwoLayerModel, _Grid, leading=("alpha", "ratio"))
    assert list(sig.parameters)[:2] == ["alpha", "ratio"]
    assert sig.parameters["alpha"].default is inspect.Parameter.empty
    assert sig.parameters["eps"].default == 0.02 and sig.parameters["t_max"].default == 12.0
    assert sig.parameters["nodes"].kind is inspect.Parameter.KEYWORD_ONLY


def test_command_line_options_carry_the_same_defaults_and_help():
    seen = {}

    @click.command()
    @click_options(TwoLayerModel, _Grid, required=("alpha", "ratio"))
    def cmd(**kw):
        seen.update(kw)

    result = CliRunner().invoke(cmd, ["--alpha", "0.5", "--ratio", "2", "--finite-size"])
    assert result.exit_code == 0, result.output
    assert seen == {**defaults(TwoLayerModel), **defaults(_Grid), "alpha": 0.5, "ratio": 2.0, "finite_size": True}
    text = CliRunner().invoke(cmd, ["--help"]).output
    assert "--t-max" in text and "Final time in tau" in text and "[default: 12.0]" in text
    assert CliRunner().invoke(cmd, ["--ratio", "2"]).exit_code == 2  # --alpha is required
