"""Reading dmft files: a summary of any file (:func:`describe`), and the generic HDF5 layer of
:mod:`dmft.solvers.hdf5` (:func:`read_h5`, :func:`write_h5`, :func:`read_parameters`), which every
file of the package is written with.  See that module for the file contract.
"""
from __future__ import annotations

import os

import h5py

from .solvers.hdf5 import (
    FORMAT,
    FORMAT_VERSION,
    FileFormatError,
    _decode_attr,
    _open,
    read_h5,
    read_parameters,
    verify,
    versions,
    write_h5,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "FileFormatError",
    "write_h5",
    "read_h5",
    "read_parameters",
    "describe",
    "verify",
    "versions",
    "load",
    "save",
]


def describe(path: str | os.PathLike) -> str:
    """Human-readable summary of a file: kind, versions, parameters, datasets with shapes."""
    lines = []
    with _open(path) as f:
        lines.append(f"{path}: {_decode_attr(f.attrs.get('kind'))} (format version {_decode_attr(f.attrs['format_version'])}, "
                     f"dmft {_decode_attr(f.attrs.get('package_version'))})")
        for key, value in f.attrs.items():
            if key not in ("format", "format_version", "kind", "package_version") and not key.endswith("_version"):
                lines.append(f"  {key} = {_decode_attr(value)}")
        if "parameters" in f:
            lines.append("parameters:")
            for key, value in f["parameters"].attrs.items():
                lines.append(f"  {key} = {_decode_attr(value)}")
        lines.append("datasets:")

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                extra = ""
                if obj.ndim == 1 and obj.size and obj.dtype.kind == "f":
                    extra = f"  [{obj[0]:.4g} ... {obj[-1]:.4g}]"
                lines.append(f"  /{name}  {obj.shape} {obj.dtype}{extra}")

        f.visititems(visit)
    return "\n".join(lines)


def load(path: str | os.PathLike):
    """The result object held by any dmft file.

    A DMFT solve or checkpoint gives a :class:`dmft.solvers.result.SolverResult`; a simulation gives a
    :class:`dmft.simulator.SimulationResult`.  A missing, damaged or foreign file raises
    :class:`FileFormatError` with one line naming the file and what failed.
    """
    kind, _ = read_parameters(path)
    if kind == "simulation":
        from .simulator import SimulationResult

        return SimulationResult.load(path)
    from .solvers.checkpoint import read_result

    return read_result(path)


def save(result, path: str | os.PathLike):
    """Write ``result`` (a solve's :class:`~dmft.solvers.result.SolverResult` or a
    :class:`~dmft.simulator.SimulationResult`) atomically to ``path``; returns the path written."""
    from .solvers.checkpoint import write_result
    from .solvers.result import SolverResult

    if isinstance(result, SolverResult):
        return write_result(path, result)
    return result.save(path)
