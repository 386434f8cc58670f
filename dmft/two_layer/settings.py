"""Numerical settings of the two-layer DMFT (:class:`TwoLayerDMFT`) and the constants of its sampled state."""
from __future__ import annotations

import dataclasses

from ..params import SEED_MAX, TwoLayerModel, dim_setting, dt_setting, require, t_max_setting
from ..solvers.settings import setting, validate
from ..solvers.state import FixedPointOptions
from ..solvers.validation import check_flag, integer, positive

KERNEL_NAMES = ("R_z", "C_z", "R_par", "C_par", "R_b", "C_b")

# response and covariance of the spike-bulk cross direction (finite_size=True only)
CROSS_KERNEL_NAMES = ("R_q", "C_q")

#: the fewest sampling replicas of a solve sized by mc_tol (3 degrees of freedom for its error bars), and the most
MIN_REPLICAS = 4
MAX_REPLICAS = 100

GRIDS = ("uniform", "adaptive")
#: most points of an adaptive grid (the per-site state is 3 x sites x MAX_POINTS^2 floats)
MAX_POINTS = 600

#: most time steps of a uniform-grid solve (memory grows like steps^2, time like steps^3)
MAX_STEPS = 20000

# Bytes of per-sample state in the causal sweep: Gamma, d Delta/d xi_b and d ell_b/d xi_b,
# each a (T+1) x (T+1) float64 matrix per sample.
_STATE_MATRICES = 3
# finite_size adds: the spike-cavity resolvent, the v-source tangent pair, the full V, and the
# site's bulk covariance C_z + zeta (zeta: the other points' memorised bumps, docs/finite-size.md)
_CROSS_MATRICES = 5
# other training points drawn per site to sample its bump field zeta
_BUMP_PARTNERS = 512


@dataclasses.dataclass(frozen=True)
class TwoLayerDMFT:
    """Numerical settings of a two-layer DMFT solve (the model is :class:`TwoLayerModel`).

    Each field's default, allowed range and help text are defined here once; the ``dmft solve``
    and ``dmft sweep`` options and the signature of :func:`dmft.solve` derive from them.
    ``u_max``: the Gaussian mass of |u| beyond it, 2 (1 - Phi(u_max)), is reported in every
    result (a training set of P points rarely has max |u| > sqrt(2 log P) ~ 4).  ``finite_size``
    adds the finite-D terms of docs/finite-size.md; at fixed tau they vanish about like 1/D (the
    bump field's sampling noise like D^-1/2), but not at fixed s, so they matter at the D of
    simulations.  Off, the solve is the D -> inf DMFT.
    """

    dim: int = dim_setting()
    dt: float = dt_setting()
    t_max: float = t_max_setting()
    grid: str = setting("uniform", "uniform: gradient descent with steps --dt, the exact D → ∞ limit at that step. "
                        "adaptive: gradient flow (h → 0) on a grid whose steps follow --rtol (implicit BDF2; D → ∞ "
                        "only; docs/theory.md, section 7).", choices=GRIDS)
    rtol: float = setting(1e-3, "Adaptive grid: largest change per step of the train and test loss away from their "
                          "quadratic extrapolation (a local error of order h³).", check=positive(0.1))
    nodes: int = setting(12, "Gauss–Legendre nodes of the teacher field |u| on [0, u_max] (per sampling replica).",
                         check=integer(1, 1000))
    samples: int = setting(16, "Antithetic Monte-Carlo paths of the readout-mean noise per teacher-field node and "
                           "sampling replica (even).", check=integer(2, 100_000))
    u_max: float = setting(4.5, "Quadrature cut-off of |u|; the Gaussian mass beyond it is reported.",
                           check=positive(40.0))
    seed: int = setting(0, "Seed of the DMFT's Monte-Carlo sampling (the answer is deterministic given it).",
                        check=integer(0, SEED_MAX))
    cholesky_cut: float = setting(1e-10, "Relative eigenvalue cut of the path covariances' square roots (--grid "
                                  "adaptive uses at least 1e-6).",
                                  check=positive(1e-2), cli=False)
    control_variate: bool = setting(True, "Use the noise-free twin of each node as a control variate.",
                                    check=check_flag, cli=False)
    finite_size: bool = setting(False, "Add the finite-D terms (spike-bulk cross covariance, the teacher "
                                "coordinate's own memory, the other memorised points' bumps and their reaction to "
                                "each point's own bump, each point's input norm; docs/finite-size.md) for networks "
                                "at D = --dim. Off: the D → ∞ DMFT. About 4× slower.", check=check_flag)

    def __post_init__(self):
        validate(self)
        require(self.samples % 2 == 0, "samples", self.samples, "an even integer >= 2 (antithetic pairs)")
        if self.grid == "adaptive":
            require(not self.finite_size, "finite_size", self.finite_size, "False with --grid adaptive (the "
                    "finite-size terms are derived for gradient descent on the uniform grid: use --grid uniform)")
            return
        require(self.steps >= 1, "t_max", self.t_max, f"at least one step: t_max >= dt = {self.dt}")
        require(self.steps <= MAX_STEPS, "t_max/dt", self.steps, f"at most {MAX_STEPS} time steps")

    @property
    def steps(self) -> int:
        return int(round(self.t_max / self.dt))

    @property
    def n_samples(self) -> int:
        """Number of data-side sites: nodes x (samples + 1 noise-free twin)."""
        return self.nodes * (self.samples + 1)

    @property
    def matrices_per_site(self) -> int:
        """(T+1)^2 state matrices kept per sampled site."""
        return _STATE_MATRICES + (_CROSS_MATRICES if self.finite_size else 0)

    def memory_bytes(self) -> int:
        """Peak memory of a sweep: per-sample state plus ~40 (T+1)^2 kernel/accumulator arrays (an adaptive
        grid: MAX_POINTS points)."""
        t1 = MAX_POINTS if self.grid == "adaptive" else self.steps + 1
        return (8 * t1 * t1 * (self.matrices_per_site * self.n_samples + 3 * self.nodes + 40)
                + 8 * t1 * self.n_samples * 20)


@dataclasses.dataclass(frozen=True)
class TwoLayerSolve:
    """How :func:`dmft.solve` solves the two-layer DMFT and which ensembles it adds.  The
    fixed-point options (damping, tol, max_iter, checkpoint_every) are
    :class:`dmft.solvers.state.FixedPointOptions`; ``accel`` is set here because the two-layer map
    is causal, so plain iteration converges front-like (23 iterations against Anderson's 72 at
    T = 50) and is the default."""

    method: str = setting("sweep", "sweep: one causal forward pass (exact given the samples, fast); iterate: "
                          "damped fixed-point iteration on the same samples.", choices=("sweep", "iterate"))
    replicas: int | None = setting(
        None, "Sampling replicas: independent sweeps with seeds --seed, --seed+1, ...; the curves are their mean and the "
        "error bars its standard error. Default: as many as --mc-tol needs (at least 4, at most 100). An integer runs "
        "exactly that many (1: one sweep, no error bars). Seeds that diverge, or (--finite-size) whose train loss runs "
        "away, are left out and named.", check=integer(1, MAX_REPLICAS).or_none())
    mc_tol: float = setting(0.003, "Target Monte-Carlo standard error of the train and test loss (largest over τ): "
                            "replicas are added until it is reached. The error reached is printed and stored.",
                            check=positive(1.0))
    datasets: int = setting(0, "Also solve this many training-set replicas (P = ratio·dim points) and report the "
                            "spread over training sets (sd, 16/84 % bands, grokking times). Each costs one sweep.",
                            check=integer(0, 1000))
    accel: str = setting("none", "Fixed-point acceleration of --method iterate.", choices=("none", "anderson"))
    checkpoint_every: int | None = setting(
        None, "Write the --out file every this many iterations (iterate; default 5) or time rows of the causal pass "
        "(sweep; default none: a sweep checkpoint holds the pass's whole per-site state and at the default sites "
        "writing it every 5 rows makes a run about 8× slower). --resume continues a sweep bit-identically.",
        check=integer(1, 10**6).or_none())

    def __post_init__(self):
        validate(self)


#: the settings classes whose fields are the keyword options of :func:`dmft.solve`, in this order
#: (a name in two classes belongs to the first: ``accel`` to :class:`TwoLayerSolve`)
SOLVE_SETTINGS = (TwoLayerModel, TwoLayerDMFT, TwoLayerSolve, FixedPointOptions)
