"""The generic nested-dict <-> HDF5 layer every dmft file is written with: atomic writes and the file contract.

File contract (every file written by this package, simulator or solver):

* root attributes: ``format`` ("dmft"), ``format_version`` (:data:`FORMAT_VERSION`),
  ``kind`` ("simulation", "dmft-linear", "dmft-two-layer", ...), ``package_version``,
  versions of numpy/scipy/numba/h5py, and one attribute per parameter under ``/parameters``;
* ``/observables/tau`` (shape T, time in units tau = eta t / D), ``/observables/train_loss``,
  ``/observables/test_loss`` (shape T) and further curves of the same length beside them;
* model-specific groups (``/seeds/<k>/observables`` for simulations, ``/kernels`` and
  ``/solver`` for DMFT solves).

Writes are atomic: the file is written to ``<path>.tmp`` in the same directory, flushed and
renamed over ``path``, so a killed process never leaves a half-written result.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np

FORMAT = "dmft"
FORMAT_VERSION = 1

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "package_version",
    "FileFormatError",
    "write_h5",
    "read_h5",
    "read_parameters",
    "versions",
]


class FileFormatError(RuntimeError):
    """A file is missing, corrupted, of another format version or of another kind."""


def package_version() -> str:
    """Version of the installed dmft distribution ("unknown" when run from a checkout that is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dmft")
    except PackageNotFoundError:
        return "unknown"


def versions() -> dict:
    """Versions of the package and of its numerical dependencies (stored in every file)."""
    import numba
    import scipy

    return {
        "package_version": package_version(),
        "numpy_version": np.__version__,
        "scipy_version": scipy.__version__,
        "numba_version": numba.__version__,
        "h5py_version": h5py.__version__,
    }


def _attr_value(value: Any) -> Any:
    if value is None:
        return h5py.Empty("f8")  # HDF5's null dataspace: an attribute that exists and holds no value
    if isinstance(value, float) and np.isinf(value):
        return np.float64(value)
    return value


def _decode_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, h5py.Empty):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _dump(group: h5py.Group, tree: Mapping[str, Any]) -> None:
    for key, value in tree.items():
        if isinstance(value, Mapping):
            _dump(group.require_group(str(key)), value)
        elif value is None:
            continue
        else:
            arr = np.asarray(value)
            if arr.dtype.kind in "US":
                group.create_dataset(str(key), data=arr.astype(h5py.string_dtype()))
            else:
                group.create_dataset(str(key), data=arr)


def _load(group: h5py.Group) -> dict:
    out: dict[str, Any] = {}
    for key, item in group.items():
        if isinstance(item, h5py.Group):
            out[key] = _load(item)
        else:
            data = item[()]
            if isinstance(data, bytes):
                data = data.decode()
            elif isinstance(data, np.ndarray) and data.dtype.kind == "O":
                data = np.array([d.decode() if isinstance(d, bytes) else d for d in data.ravel()]).reshape(data.shape)
            out[key] = data
    return out


def write_h5(
    path: str | os.PathLike,
    kind: str,
    parameters: Mapping[str, Any],
    data: Mapping[str, Any],
    attrs: Mapping[str, Any] | None = None,
) -> Path:
    """Atomically write ``data`` (a nested dict of arrays) with the file contract's metadata.

    ``parameters`` become attributes of ``/parameters`` (and are mirrored on the root so that
    ``h5ls -v`` shows them); ``attrs`` are extra root attributes.  Returns the final path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["kind"] = kind
            for key, value in versions().items():
                f.attrs[key] = value
            for key, value in (attrs or {}).items():
                f.attrs[key] = _attr_value(value)
            pgroup = f.create_group("parameters")
            for key, value in parameters.items():
                pgroup.attrs[key] = _attr_value(value)
            _dump(f, data)
            if "observables" in f and "tau" in f["observables"]:
                # Label time axes (dimension scales) so that tools know what the axes are.
                tau = f["observables/tau"]
                tau.make_scale("tau")
                tau.attrs["units"] = "tau = eta * t / D"
                for name, ds in f["observables"].items():
                    if name != "tau" and ds.ndim >= 1 and ds.shape[-1] == tau.shape[0]:
                        ds.dims[ds.ndim - 1].attach_scale(tau)
                if "kernels" in f:  # both time axes of every two-time kernel
                    for ds in f["kernels"].values():
                        if isinstance(ds, h5py.Dataset) and ds.shape == (tau.shape[0], tau.shape[0]):
                            ds.dims[0].attach_scale(tau)
                            ds.dims[1].attach_scale(tau)
            f.flush()
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _open(path: str | os.PathLike) -> h5py.File:
    path = Path(path)
    if not path.exists():
        raise FileFormatError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:  # truncated, corrupted, not HDF5
        raise FileFormatError(f"{path}: not a readable HDF5 file (truncated or corrupted?): {exc}") from None
    fmt = _decode_attr(f.attrs.get("format"))
    version = _decode_attr(f.attrs.get("format_version"))
    if fmt != FORMAT:
        f.close()
        raise FileFormatError(f"{path}: not a dmft file (format attribute {fmt!r})")
    if version != FORMAT_VERSION:
        f.close()
        raise FileFormatError(
            f"{path}: file format version {version} is not supported (this dmft reads version {FORMAT_VERSION})"
        )
    return f


def read_h5(path: str | os.PathLike, kind: str | tuple[str, ...] | None = None) -> dict:
    """Read a whole file as a nested dict: {'attrs': ..., 'parameters': ..., <groups>...}.

    Raises :class:`FileFormatError` with a clear message for a missing, corrupted, foreign,
    wrong-version or wrong-kind file.
    """
    with _open(path) as f:
        file_kind = _decode_attr(f.attrs.get("kind"))
        kinds = (kind,) if isinstance(kind, str) else kind
        if kinds is not None and file_kind not in kinds:
            raise FileFormatError(f"{path}: holds a {file_kind!r} result, expected {' or '.join(kinds)}")
        try:
            out = _load(f)
        except (OSError, KeyError, ValueError) as exc:
            raise FileFormatError(f"{path}: corrupted content: {exc}") from None
        out["attrs"] = {k: _decode_attr(v) for k, v in f.attrs.items()}
        out["parameters"] = {k: _decode_attr(v) for k, v in f["parameters"].attrs.items()} if "parameters" in f else {}
    return out


def read_parameters(path: str | os.PathLike) -> tuple[str, dict]:
    """(kind, parameters) of a file, without reading its arrays."""
    with _open(path) as f:
        kind = _decode_attr(f.attrs.get("kind"))
        params = {k: _decode_attr(v) for k, v in f["parameters"].attrs.items()} if "parameters" in f else {}
    return kind, params
