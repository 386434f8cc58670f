"""The generic nested-dict <-> HDF5 layer every dmft file is written with: atomic writes and the file contract.

File contract (every file written by this package, simulator or solver):

* root attributes: ``format`` ("dmft"), ``format_version`` (:data:`FORMAT_VERSION`),
  ``kind`` ("simulation", "dmft-linear", "dmft-two-layer", ...), ``package_version``,
  versions of numpy/scipy/numba/h5py, and one attribute per parameter under ``/parameters``;
* ``/observables/tau`` (shape T, time in units tau = eta t / D), ``/observables/train_loss``,
  ``/observables/test_loss`` (shape T) and further curves of the same length beside them: only
  curves on the time grid (errors, runs, spreads and scalars have groups of their own);
* model-specific groups (``/std``, ``/per_seed``, ``/lazy_reference``, ``/data_moments``,
  ``/diverged_at`` for simulations, :class:`dmft.simulation_result.SimulationResult`; ``/errors``,
  ``/sampling_runs``, ``/dataset_bands``, ``/diagnostics``, ``/kernels`` and ``/solver`` for DMFT
  solves, :mod:`dmft.solvers.checkpoint`).

* root attribute ``checksum``: BLAKE2b of every group, dataset and attribute; every reader verifies it;
* the HDF5 user block (the first 512 bytes, which HDF5 leaves to applications) holds a BLAKE2b digest
  of every byte after it, checked before HDF5 parses anything: a damaged byte anywhere is refused
  without handing damaged metadata to the HDF5 library.

Writes are atomic: the file is written under a temporary name unique to the writer in the same
directory, synced and renamed over ``path``, so a killed process never leaves a half-written
result and concurrent writers of one path never delete each other's files (the last rename wins).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np

FORMAT = "dmft"
FORMAT_VERSION = 3

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "package_version",
    "FileFormatError",
    "write_h5",
    "read_h5",
    "read_parameters",
    "versions",
    "verify",
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
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "fiub":
        return tuple(value.tolist())  # a sequence parameter (written from a tuple) reads back as that tuple
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


_CHECKSUM = "checksum"
# attributes that HDF5's dimension-scale machinery keeps (object references, not content)
_SCALE_ATTRS = frozenset({"DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME"})


def _value_bytes(value: Any) -> bytes:
    """Canonical bytes of an attribute or dataset value, as read back by h5py."""
    if isinstance(value, h5py.Empty):
        return b"E"
    if isinstance(value, bytes):
        return b"b" + value
    if isinstance(value, str):
        return b"s" + value.encode()
    arr = np.asarray(value)
    if arr.dtype.kind in "OSU":
        items = [v if isinstance(v, bytes) else str(v).encode() for v in arr.ravel()]
        return b"S" + repr(arr.shape).encode() + b"\0".join(items)
    arr = np.ascontiguousarray(arr)
    return arr.dtype.str.encode() + repr(arr.shape).encode() + arr.reshape(-1).view(np.uint8).tobytes()


def _digest(f: h5py.File) -> str:
    """BLAKE2b of every group, dataset (dtype, shape, values) and attribute of an open file, in a
    fixed order, except the checksum attribute itself and the dimension-scale bookkeeping."""
    h = hashlib.blake2b(digest_size=16)

    def attributes(obj, name: str) -> None:
        for key in sorted(obj.attrs):
            if key == _CHECKSUM or key in _SCALE_ATTRS:
                continue
            h.update(f"{name}@{key}\0".encode() + _value_bytes(obj.attrs[key]))

    attributes(f, "/")
    names: list[str] = []
    f.visit(names.append)
    for name in sorted(names):
        obj = f[name]
        if isinstance(obj, h5py.Dataset):
            h.update(f"{name}\0D".encode() + _value_bytes(obj[()]))
        else:
            h.update(f"{name}\0G".encode())
        attributes(obj, name)
    return h.hexdigest()


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory handles
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_h5(
    path: str | os.PathLike,
    kind: str,
    parameters: Mapping[str, Any],
    data: Mapping[str, Any],
    attrs: Mapping[str, Any] | None = None,
) -> Path:
    """Atomically write ``data`` (a nested dict of arrays) with the file contract's metadata.

    ``parameters`` become attributes of ``/parameters``; ``attrs`` are extra root attributes.
    The file is written under a temporary name unique to this call in the target directory,
    checksummed (root attribute ``checksum``, see :func:`verify`), synced to disk and renamed
    over ``path``: a reader sees the old file or the new one, never a mixture, and two writers
    of one path never touch each other's temporary file.  Returns the final path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with h5py.File(tmp, "w", userblock_size=_USERBLOCK) as f:
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
            f.attrs[_CHECKSUM] = _digest(f)
        with open(tmp, "r+b") as handle:
            handle.seek(_USERBLOCK)
            header = _file_header(hashlib.blake2b(handle.read(), digest_size=32).hexdigest())
            handle.seek(0)
            handle.write(header)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if tmp.exists():  # only this call's own temporary file
            tmp.unlink()
    return path


_USERBLOCK = 512
_MAGIC = b"dmft file; BLAKE2b-256 of the bytes after this 512-byte block: "


def _file_header(hexdigest: str) -> bytes:
    return (_MAGIC + hexdigest.encode() + b"\n").ljust(_USERBLOCK, b"\0")


def _check_bytes(path: Path) -> None:
    """The whole-file digest in the user block matches the file's bytes (before HDF5 reads them)."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(_USERBLOCK)
            digest = hashlib.blake2b(handle.read(), digest_size=32).hexdigest()
    except OSError as exc:
        raise FileFormatError(f"{path}: unreadable: {_one_line(exc)}") from None
    if not header.startswith(_MAGIC):
        raise FileFormatError(f"{path}: not a dmft file of format version {FORMAT_VERSION} (no file checksum "
                              "header; damaged, or written by another program or dmft version)")
    if header != _file_header(digest):
        raise FileFormatError(f"{path}: checksum mismatch: the file is corrupted (its bytes differ from what "
                              "was written)")


def _open(path: str | os.PathLike) -> h5py.File:
    """Open a dmft file for reading after checking its format, version and checksum; every
    failure is one :class:`FileFormatError` naming the file and what failed."""
    path = Path(path)
    if not path.exists():
        raise FileFormatError(f"{path}: no such file")
    if path.is_dir():
        raise FileFormatError(f"{path}: is a directory, not a dmft file")
    _check_bytes(path)
    try:
        f = h5py.File(path, "r")
    except Exception as exc:  # truncated, corrupted, not HDF5, unreadable
        raise FileFormatError(f"{path}: not a readable HDF5 file (truncated or corrupted?): "
                              f"{_one_line(exc)}") from None
    try:
        fmt = _decode_attr(f.attrs.get("format"))
        version = _decode_attr(f.attrs.get("format_version"))
        if fmt != FORMAT:
            raise FileFormatError(f"{path}: not a dmft file (format attribute {fmt!r})")
        if version != FORMAT_VERSION:
            raise FileFormatError(f"{path}: file format version {version} is not supported "
                                  f"(this dmft reads version {FORMAT_VERSION}; write the file again)")
        stored = _decode_attr(f.attrs.get(_CHECKSUM))
        if not isinstance(stored, str):
            raise FileFormatError(f"{path}: no checksum attribute: the file is damaged or was not written by dmft")
        if _digest(f) != stored:
            raise FileFormatError(f"{path}: checksum mismatch: the file is corrupted (its content differs "
                                  "from what was written)")
    except FileFormatError:
        f.close()
        raise
    except Exception as exc:  # damaged metadata can fail anywhere inside h5py
        f.close()
        raise FileFormatError(f"{path}: corrupted content: {_one_line(exc)}") from None
    return f


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}"


def verify(path: str | os.PathLike) -> None:
    """Raise :class:`FileFormatError` unless ``path`` is an intact dmft file (format, version, checksum)."""
    _open(path).close()


def read_h5(path: str | os.PathLike, kind: str | tuple[str, ...] | None = None) -> dict:
    """Read a whole file as a nested dict: {'attrs': ..., 'parameters': ..., <groups>...}.

    The checksum is verified first.  Raises :class:`FileFormatError` with a one-line message for a
    missing, corrupted, foreign, wrong-version or wrong-kind file.
    """
    with _open(path) as f:
        try:
            file_kind = _decode_attr(f.attrs.get("kind"))
            kinds = (kind,) if isinstance(kind, str) else kind
            if kinds is not None and file_kind not in kinds:
                raise FileFormatError(f"{path}: holds a {file_kind!r} result, expected {' or '.join(kinds)}")
            out = _load(f)
            out["attrs"] = {k: _decode_attr(v) for k, v in f.attrs.items() if k not in _SCALE_ATTRS}
            out["parameters"] = ({k: _decode_attr(v) for k, v in f["parameters"].attrs.items()}
                                 if "parameters" in f else {})
        except FileFormatError:
            raise
        except Exception as exc:
            raise FileFormatError(f"{path}: corrupted content: {_one_line(exc)}") from None
    return out


def read_parameters(path: str | os.PathLike) -> tuple[str, dict]:
    """(kind, parameters) of a verified file."""
    with _open(path) as f:
        try:
            kind = _decode_attr(f.attrs.get("kind"))
            params = {k: _decode_attr(v) for k, v in f["parameters"].attrs.items()} if "parameters" in f else {}
        except Exception as exc:
            raise FileFormatError(f"{path}: corrupted content: {_one_line(exc)}") from None
    return kind, params
