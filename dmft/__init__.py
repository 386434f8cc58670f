"""dmft: exact high-dimensional dynamics (DMFT) of two-layer network training, and the
finite-size simulator that checks it.

Main entry points (imported lazily, so that ``import dmft`` is fast):

* :func:`dmft.solve`            DMFT of the two-layer network (``dmft solve``);
* :func:`dmft.solve_linear`     DMFT of linear regression, the engine's validation model;
* :func:`dmft.simulate`         finite-width / infinite-width network simulator (``dmft simulate``);
* :func:`dmft.kernel_flow`      lazy (NTK) kernel gradient-flow reference;
* :mod:`dmft.io`                HDF5 files (``dmft.io.read_h5``, ``dmft.io.describe``).
"""
from __future__ import annotations

__version__ = "0.1.0"

from .params import ParameterError, TwoLayerModel, LinearModel  # noqa: E402,F401

_LAZY = {
    "solve": ("dmft.two_layer", "solve"),
    "solve_linear": ("dmft.linear", "solve_linear"),
    "marchenko_pastur_losses": ("dmft.marchenko_pastur", "losses"),
    "simulate": ("dmft.simulator", "simulate"),
    "kernel_flow": ("dmft.lazy", "kernel_flow"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'dmft' has no attribute {name!r}")


__all__ = ["ParameterError", "TwoLayerModel", "LinearModel", *_LAZY]
