"""dmft: the exact high-dimensional dynamics (DMFT) of two-layer network training, and the
simulator of finite- and infinite-width networks that checks it.

Kumar, Bordelon, Gershman and Pehlevan, "Grokking as the transition from lazy to rich training
dynamics", ICLR 2024.

Entry points (imported on first use, so that ``import dmft`` stays fast):

* :func:`dmft.solve`               DMFT of the two-layer network (``dmft solve``);
* :func:`dmft.solve_linear`        DMFT of linear regression, the engine's validation model;
* :func:`dmft.simulate`            network simulator (``dmft simulate``);
* :func:`dmft.compare`             figure of DMFT results against simulations (``dmft compare``);
* :func:`dmft.against_simulation`  agreement figures of a DMFT curve against networks;
* :func:`dmft.load`, :func:`dmft.save`  any dmft HDF5 file to and from its result object;
* :func:`dmft.kernel_flow`         lazy (NTK) kernel gradient-flow reference;
* :class:`dmft.TwoLayerModel`, :class:`dmft.LinearModel`  validated model parameters.

The numerical machinery (time grids, Volterra and Gaussian kernels, the fixed-point driver,
checkpoints) is :mod:`dmft.solvers`; it never imports the models.
"""
from __future__ import annotations

import os as _os

__version__ = "0.1.0"

# In a source checkout the machinery (solvers/) and the command line (cli.py) sit beside this
# package; the installed wheel places them inside it (pyproject: force-include).  Extending the
# package path gives both layouts the one namespace dmft.solvers / dmft.cli.
_here = _os.path.dirname(_os.path.abspath(__file__))
_checkout = _os.path.dirname(_here)
if not _os.path.isdir(_os.path.join(_here, "solvers")) and _os.path.isfile(
    _os.path.join(_checkout, "solvers", "__init__.py")
):
    __path__.append(_checkout)  # noqa: F821 (module __path__)

_LAZY = {
    "TwoLayerModel": ("dmft.params", "TwoLayerModel"),
    "LinearModel": ("dmft.params", "LinearModel"),
    "ParameterError": ("dmft.solvers.validation", "ParameterError"),
    "solve": ("dmft.two_layer", "solve"),
    "solve_linear": ("dmft.linear", "solve_linear"),
    "marchenko_pastur_losses": ("dmft.marchenko_pastur", "losses"),
    "simulate": ("dmft.simulator", "simulate"),
    "compare": ("dmft.plot", "compare"),
    "against_simulation": ("dmft.agreement", "against_simulation"),
    "load": ("dmft.io", "load"),
    "save": ("dmft.io", "save"),
    "kernel_flow": ("dmft.lazy", "kernel_flow"),
    "FileFormatError": ("dmft.solvers.hdf5", "FileFormatError"),
    "SolverResult": ("dmft.solvers.result", "SolverResult"),
    "SimulationResult": ("dmft.simulator", "SimulationResult"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'dmft' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = list(_LAZY)
