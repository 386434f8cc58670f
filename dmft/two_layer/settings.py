"""Numerical settings of the two-layer DMFT (:class:`TwoLayerDMFT`) and the constants of its sampled state."""
from __future__ import annotations

import dataclasses

import numpy as np

from ..params import check_int, check_positive, require

KERNEL_NAMES = ("R_z", "C_z", "R_par", "C_par", "R_b", "C_b")

# response and covariance of the spike-bulk cross direction (finite_size=True only)
CROSS_KERNEL_NAMES = ("R_q", "C_q")

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

    dim       D, enters only through the teacher-spike seed s(0) = 1/D and the u^2/D centring
    dt        Euler step h in tau (the DMFT is the exact D -> inf limit of GD with eta = h D)
    t_max     final time (tau); T = round(t_max / dt) steps
    nodes     Gauss-Legendre nodes of the teacher field |u| on [0, u_max]
    samples   antithetic Monte-Carlo paths of xi_b per node (even)
    u_max     quadrature cut-off of |u|; the Gaussian mass beyond it, 2 (1 - Phi(u_max)), is
              reported in every result (a training set of P points rarely has
              max |u| > sqrt(2 log P) ~ 4, and sites far beyond are unstable under Euler
              steps in the rich regime)
    seed      seed of the Monte-Carlo paths (the answer is deterministic given it)
    finite_size  add the finite-D terms of docs/finite-size.md: the spike-bulk cross covariance
              (the learned direction is bhat plus an O(1) random bulk component, which the D -> inf
              equations drop), the teacher coordinate's own memory (u^2/D) R_par, and the other
              memorised points' bumps seen by each point (a per-site random field, and its
              test-loss term) and their reaction to each point's own bump.  At fixed tau they vanish
              as D -> inf (about like 1/D: s(tau) ~ 1/D;
              the bump field's sampling noise like D^-1/2), but not at fixed s, so they matter at
              the D of simulations.  Off: the D -> inf DMFT, unchanged (to round-off).
    """

    dim: int = 200
    dt: float = 0.2
    t_max: float = 12.0
    nodes: int = 24
    samples: int = 64
    u_max: float = 4.5
    seed: int = 0
    cholesky_cut: float = 1e-10
    control_variate: bool = True
    finite_size: bool = False

    def __post_init__(self):
        object.__setattr__(self, "dim", check_int("dim", self.dim, 1))
        object.__setattr__(self, "dt", check_positive("dt", self.dt))
        object.__setattr__(self, "t_max", check_positive("t_max", self.t_max))
        object.__setattr__(self, "nodes", check_int("nodes", self.nodes, 1, 1000))
        object.__setattr__(self, "samples", check_int("samples", self.samples, 2))
        require(self.samples % 2 == 0, "samples", self.samples, "an even integer >= 2 (antithetic pairs)")
        object.__setattr__(self, "u_max", check_positive("u_max", self.u_max))
        object.__setattr__(self, "seed", check_int("seed", self.seed, 0))
        object.__setattr__(self, "cholesky_cut", check_positive("cholesky_cut", self.cholesky_cut))
        for flag in ("control_variate", "finite_size"):
            require(isinstance(getattr(self, flag), (bool, np.bool_)), flag, getattr(self, flag), "True or False")
        require(self.steps >= 1, "t_max", self.t_max, f"at least one step: t_max >= dt = {self.dt}")
        require(self.steps <= 20000, "t_max/dt", self.steps, "at most 20000 time steps")

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
        """Peak memory of a sweep: per-sample state plus ~40 (T+1)^2 kernel/accumulator arrays."""
        t1 = self.steps + 1
        return (8 * t1 * t1 * (self.matrices_per_site * self.n_samples + 3 * self.nodes + 40)
                + 8 * t1 * self.n_samples * 20)
