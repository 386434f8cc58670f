"""The typed state of one pass of the two-layer DMFT over t = 0..T (:meth:`TwoLayerProblem._run`)."""
from __future__ import annotations

import dataclasses

import numpy as np

#: the data-side averages of a pass, each (T+1) x (T+1): the weight side's drives
AVERAGE_NAMES = ("Rhat_z", "Rhat_par", "N_z", "N_par", "N_b", "Rhat_b")
#: finite_size adds the cross direction's response drive and covariance
CROSS_AVERAGE_NAMES = ("Rhat_q", "C_q")


@dataclasses.dataclass
class SweepState:
    """Per-site state (B sites, T1 = T + 1 times) and data-side averages of one pass.

    Shapes: (B, T1, T1) for the per-site matrices, (B, T1) for the per-site paths, (T1, T1) for
    Cholesky factors and averages.  The finite-size fields are None when the pass
    has no finite-size terms.  Item access (``state["Delta"]``) reads a field.
    """

    Gam: np.ndarray  # resolvent Gamma of each site's neuron field, rows <= t
    dDelta: np.ndarray  # tangent d Delta / d xi_b
    dEll: np.ndarray  # tangent d ell_b / d xi_b
    m: np.ndarray  # readout-mean field m(t)
    Delta: np.ndarray  # residual Delta(t) (NaN after a divergence)
    ell: np.ndarray  # ell_b(t) = Delta (gamma + kappa m)
    chol: np.ndarray  # causal Cholesky factor of C_b
    phi: list  # the three weight-side families' Euler memories (propagate_row)
    trace_drive: np.ndarray  # E[Delta(t) V(t,t)], the data side of the trace sum rule
    avg: dict  # AVERAGE_NAMES (+ CROSS_AVERAGE_NAMES) -> (T1, T1)
    train_cv: np.ndarray  # the control variate's correction of the train loss
    u_ell: np.ndarray | None = None  # E[u ell_b(t)], the drive of the readout mean's teacher component (odd targets)
    # finite-size terms (docs/finite-size.md)
    react: np.ndarray | None = None  # the other points' reaction residual per site
    chi: np.ndarray | None = None  # cavity field of the cross direction, chi ~ GP(0, C_q)
    p_spk: np.ndarray | None = None  # Gc phi per site
    c_spk: np.ndarray | None = None  # Gc chi per site
    chol_q: np.ndarray | None = None  # causal Cholesky factor of C_q
    Gamc: np.ndarray | None = None  # spike-cavity resolvent
    dDv: np.ndarray | None = None  # v-source tangent pair
    dEv: np.ndarray | None = None
    Vfull: np.ndarray | None = None  # full covariance V per site
    Czs: np.ndarray | None = None  # the site's bulk covariance C_z + zeta
    R_q: np.ndarray | None = None
    Phi_q: np.ndarray | None = None
    Wq: np.ndarray | None = None  # the cross direction's weights per site
    zero: np.ndarray | None = None
    C_scratch: np.ndarray | None = None
    bump: np.ndarray | None = None  # the bump field per site
    bump2: np.ndarray | None = None  # E[b(t,t)^2] over the sites (bump_test_correction)

    @classmethod
    def empty(cls, B: int, T1: int, finite_size: bool, odd_target: bool = False) -> "SweepState":
        def z(*shape):
            return np.zeros(shape)

        avg = {k: z(T1, T1) for k in AVERAGE_NAMES}
        common = dict(Gam=z(B, T1, T1), dDelta=z(B, T1, T1), dEll=z(B, T1, T1), m=z(B, T1),
                      Delta=np.full((B, T1), np.nan), ell=z(B, T1), chol=z(T1, T1), phi=[z(T1) for _ in range(3)],
                      trace_drive=z(T1), avg=avg, train_cv=z(T1), u_ell=z(T1) if odd_target else None)
        if not finite_size:
            return cls(**common)
        avg.update({k: z(T1, T1) for k in CROSS_AVERAGE_NAMES})
        return cls(**common, react=z(B, T1), chi=z(B, T1), p_spk=z(B, T1), c_spk=z(B, T1), chol_q=z(T1, T1), Gamc=z(B, T1, T1),
                   dDv=z(B, T1, T1), dEv=z(B, T1, T1), Vfull=z(B, T1, T1), Czs=z(B, T1, T1),
                   R_q=z(T1, T1), Phi_q=z(T1), Wq=z(B, T1), zero=z(T1, T1), C_scratch=z(T1, T1),
                   bump=z(B, T1), bump2=z(T1))

    def to_tree(self) -> dict:
        """The state as a nested dict of arrays (for a checkpoint file; :meth:`from_tree` inverts it
        exactly).  Fields that are None are left out."""
        tree = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name == "phi":
                value = {str(i): v for i, v in enumerate(value)}
            tree[f.name] = value
        return tree

    @classmethod
    def from_tree(cls, tree) -> "SweepState":
        """The state stored by :meth:`to_tree` (arrays copied, writable, float64 as written)."""
        kw = {}
        for f in dataclasses.fields(cls):
            if f.name not in tree:
                kw[f.name] = None
            elif f.name == "phi":
                kw[f.name] = [np.array(tree["phi"][str(i)]) for i in range(len(tree["phi"]))]
            elif f.name == "avg":
                kw[f.name] = {k: np.array(v) for k, v in tree["avg"].items()}
            else:
                kw[f.name] = np.array(tree[f.name])
        return cls(**kw)

    def readouts(self) -> "SweepState":
        """The same pass without its (sites x T x T) matrices (None): what the readouts use."""
        return dataclasses.replace(self, **{f.name: None for f in dataclasses.fields(self)
                                            if np.ndim(getattr(self, f.name)) == 3})

    def __getitem__(self, name: str):
        return getattr(self, name)

    def __contains__(self, name: str) -> bool:
        return getattr(self, name, None) is not None
