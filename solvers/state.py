"""Options and state of the fixed-point driver (:func:`dmft.solvers.fixed_point.iterate`).

:class:`FixedPointOptions` is frozen and validated; :class:`SolverState` is everything the
iteration needs to continue, checkpointed in full by :mod:`dmft.solvers.checkpoint`.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Protocol

import numpy as np

from .anderson import Anderson
from .result import Status
from .settings import setting, validate
from .validation import check_flag, check_positive, fraction, integer, positive, require

__all__ = ["Problem", "FixedPointOptions", "IterationInfo", "SolverState", "validated_kernels"]


class Problem(Protocol):
    """What :func:`iterate` needs from a model (duck-typed; the attributes below)."""

    kind: str  # file kind, e.g. "dmft-linear"

    def parameters(self) -> dict:
        """Flat dict of scalars defining the answer (model, grid, seeds, ...)."""

    def initial_kernels(self) -> dict:
        """Starting kernels K_0, dict name -> float64 array."""

    def update(self, kernels: Mapping[str, np.ndarray]) -> dict:
        """F(K): new kernels, same names and shapes.  Deterministic (a Monte-Carlo map draws its
        samples from a seed in its parameters); must not modify its input, and must return fresh
        arrays (the driver keeps references to past iterates instead of copying them)."""

    def observables(self, kernels: Mapping[str, np.ndarray]) -> dict:
        """Curves on the time grid only, 1-D arrays of length T: 'tau', 'train_loss', 'test_loss', ..."""

    # optional: derived_kernels(kernels) -> dict of extra (not iterated) kernels written to files;
    #           errors(kernels) -> {kind: {name: standard error (T,)}} of the curves (SolverResult.errors);
    #           grid: a TimeGrid.


@dataclasses.dataclass(frozen=True)
class FixedPointOptions:
    """Validated, frozen options of :func:`iterate` (see the module docstring for conventions)."""

    damping: float = setting(0.0, "Fixed-point damping: the weight kept on the previous iterate, "
                             "K ← (1 − d) F(K) + d K.", check=fraction())
    adaptive_damping: bool = setting(False, "Raise the damping when the residual grows.", check=check_flag,
                                     cli=False)
    accel: str = setting("anderson", "Fixed-point acceleration.", choices=("none", "anderson"))
    anderson_memory: int = setting(5, "Iterates kept by Anderson acceleration.", check=integer(1, 50), cli=False)
    tol: float = setting(1e-8, "Convergence: relative sup-norm change of all kernels between iterations.",
                         check=positive(1.0))
    max_iter: int = setting(200, "Maximum fixed-point iterations.", check=integer(1, 10**6))
    checkpoint_every: int = setting(5, "Write the --out file every this many iterations (and at the end).",
                                    check=integer(1, 10**6))
    confirm_factor: float = setting(100.0, "An undamped confirmation step may move the kernels by at most "
                                    "confirm_factor * tol (inf: no confirmation).", cli=False)
    divergence_factor: float = setting(1e3, "Stop when the residual exceeds its minimum by this factor "
                                       "(inf disables divergence detection).", cli=False)
    divergence_patience: int = setting(3, "Consecutive iterations above divergence_factor that end the iteration.",
                                       check=integer(1, 10**6), cli=False)
    max_damping: float = setting(0.9, "Upper limit of the adaptive damping, in [damping, 1).", cli=False)
    anderson_cond_max: float = setting(1e10, "Condition number above which Anderson's history is reset.",
                                       check=positive(), cli=False)

    def __post_init__(self):
        validate(self)
        object.__setattr__(self, "confirm_factor", check_positive("confirm_factor", self.confirm_factor,
                                                                  allow_inf=True))
        f = check_positive("divergence_factor", self.divergence_factor, allow_inf=True)
        require(f > 1, "divergence_factor", f, "a number > 1 (inf disables divergence detection)")
        object.__setattr__(self, "divergence_factor", f)
        m = self.max_damping
        require(isinstance(m, (int, float)) and not isinstance(m, bool) and self.damping <= m < 1,
                "max_damping", m, f"[damping, 1) = [{self.damping}, 1)")
        object.__setattr__(self, "max_damping", float(m))

    # options that shape the sequence of iterates: a resume must use the same values (the others --
    # tol, max_iter, checkpoint_every, confirm_factor, divergence_* -- only decide when to stop)
    ITERATE_DEFINING = ("damping", "adaptive_damping", "accel", "anderson_memory", "max_damping",
                        "anderson_cond_max")

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def describe(self) -> str:
        acc = f"anderson(m={self.anderson_memory})" if self.accel == "anderson" else "plain"
        return f"{acc}, damping={self.damping:g}" + (" adaptive" if self.adaptive_damping else "")


@dataclasses.dataclass(frozen=True)
class IterationInfo:
    """Snapshot handed to the callback after each iteration (raise StopIteration to stop cleanly)."""

    iteration: int  # number of map evaluations so far (= len(residuals))
    residual: float  # residual of the iterate just evaluated
    damping: float  # damping used for the step just taken
    elapsed: float  # seconds since this call started


@dataclasses.dataclass
class SolverState:
    """Everything the iteration needs to continue (checkpointed in full)."""

    keys: list  # kernel names, in the order of the flattened vector
    kernels: dict  # current iterate K_k (not yet evaluated)
    residuals: list = dataclasses.field(default_factory=list)  # relative residual of each iterate
    changes: list = dataclasses.field(default_factory=list)  # absolute change max ||F(K) - K||_inf
    damping: float = 0.0
    anderson: Anderson | None = None
    best_residual: float = math.inf
    best_iteration: int = -1
    best_kernels: dict | None = None
    status: Status = Status.RUNNING
    confirmation_residual: float = math.nan
    message: str = ""

    @property
    def iteration(self) -> int:
        return len(self.residuals)

    @classmethod
    def initial(cls, kernels: Mapping, options: FixedPointOptions) -> "SolverState":
        kernels = validated_kernels(kernels, None, "initial_kernels()")
        anderson = Anderson(options.anderson_memory, options.anderson_cond_max) if options.accel == "anderson" else None
        return cls(keys=list(kernels), kernels=kernels, damping=options.damping, anderson=anderson)


def validated_kernels(kernels: Mapping, template: Mapping | None, where: str) -> dict:
    if not isinstance(kernels, Mapping) or not kernels:
        raise TypeError(f"{where} must return a non-empty dict of arrays, got {type(kernels).__name__}")
    out = {}
    for key, value in kernels.items():
        arr = np.asarray(value)
        if arr.dtype.kind not in "fiu":
            raise TypeError(f"{where}: kernel {key!r} has dtype {arr.dtype}, expected real numbers")
        out[str(key)] = np.ascontiguousarray(arr, dtype=np.float64)
    if template is not None:
        if list(out) != list(template):
            raise ValueError(f"{where} returned kernels {sorted(out)}, expected {sorted(template)}")
        for key, arr in out.items():
            if arr.shape != template[key].shape:
                raise ValueError(f"{where}: kernel {key!r} has shape {arr.shape}, expected {template[key].shape}")
    return out
