r"""The two-layer DMFT of gradient flow on a non-uniform time grid (``dmft solve --grid adaptive``).

The DMFT here is the exact D -> inf limit of an implicit linear multistep scheme (``"be"``, ``"cn"``
or ``"bdf2"``, :mod:`dmft.solvers.multistep`) applied to the networks' gradient flow on the grid
t_0 = 0 < t_1 < ... (time tau), as :class:`dmft.two_layer.TwoLayerProblem` is that of explicit Euler
steps.  Every memory sum uses the scheme's weighted response Q(i, j) = d theta_i / d f_j in place of
h R(t_i, t_j); the diagonal j = i is included, so each row is implicit:

* weight side, row i: Q, Phi, C of the three families z, par, b (:class:`MultistepProcess`) from the
  averages Rhat(i, k <= i) and N(i, k <= i);
* data side, row i, per site: m_i = xi_b(i) + lambda sum_{j<=i} Q_b(i, j) ell_j, the resolvent row
  Gamma(i, :) = gg_i (e_i + sum_{l<i} K(i, l) Gamma(l, :)) with K(i, l) = lambda kappa Q_z(i, l) Delta_l
  and gg_i = 1 / (1 - lambda kappa Q_z(i, i) Delta_i), V(i, i) = gg_i^2 v0_i, and Delta_i from
  Delta = u^2/2 + sigma n - alpha (m + eps m^2/2) - a (V(i, i) - 1 - u^2/D) by a scalar Newton solve;
  the tangent row d(m, Delta, ell_b)(i, :) / d xi_b is a closed-form 2 x 2 solve;
* the two are coupled through the row-i averages: a predictor (responses at the previous row's lags,
  noise covariances extrapolated in t) and Anderson-accelerated corrector passes (weight row,
  Cholesky row of C_b, data row, averages) until neither the averages nor any site's Delta_i move by
  ``row_tol``.

Sampling as in :class:`TwoLayerProblem` (Gauss-Legendre nodes of |u|, antithetic paths of xi_b, a
noise-free twin per node as control variate); ``samples=0`` keeps only the twins, whose linearised
sites are exact at eps = 0.  At eps = 0 the train and test loss are those of linear regression
(:mod:`dmft.marchenko_pastur`, labels u^2/2 acting as noise of variance E[u^4]/4 over the quadrature):
measured at alpha 1, ratio 5.5, tau <= 20, the largest errors are 2.3e-3 / 7.7e-4 / 1.9e-4 / 4.7e-5
(train, "cn", h = 0.4 / 0.2 / 0.1 / 0.05: second order) and on graded grids to tau = 1000 with steps up
to 20 the error beyond tau = 50 is below 1e-7 ("bdf2" and "cn").  A corrector pass costs O(B i^2) for
row i (B sites; the data side is the Numba kernel :func:`dmft.two_layer.flow_kernels._flow_data_row`);
about 10 passes per row reach ``row_tol`` = 1e-9.  c1 (alpha 1, eps 0.02, ratio 5.5) to tau = 120: 72
points; alpha 8, eps 0.05 to tau = 12000: 95 points.
"""
from __future__ import annotations

import math

import numpy as np

from dmft.solvers.anderson import Anderson
from dmft.solvers.grid import TimeGrid
from dmft.solvers.multistep import (MultistepCoefficients, MultistepProcess, check_scheme, coefficients, pad,
                                    set_step)
from dmft.solvers.validation import ParameterError, check_int, check_positive
from dmft.solvers.volterra import cholesky_extend

from ..params import DIVERGENCE_BOUND, TwoLayerModel, diverged
from .flow_kernels import _flow_data_row
from ..target import evaluate
from .readouts import population_test_loss
from .settings import MAX_POINTS

_FAMILIES = (("z", 1.0), ("par", 1.0), ("b", 0.0))
#: the smallest relative pivot cut of C_b's causal Cholesky factor in this solver: with smaller cuts, round-off in a
#: row's corrector passes is amplified through near-singular pivots and the rows stall (docs/theory.md, section 7)
FLOW_CHOLESKY_CUT = 1e-6
_RESPONSES = ("Rz", "Rpar", "Rb")
_NOISES = ("Nz", "Npar", "Nb")


def _row_vector(avg, i):
    """Row i of the six averages (columns <= i) as one vector, then E[u ell_b(t_i)] for an odd target."""
    rows = [avg[k][i, : i + 1] for k in _RESPONSES + _NOISES]
    if "u_ell" in avg:
        rows.append(avg["u_ell"][i: i + 1])
    return np.concatenate(rows)


def _set_row(avg, i, x):
    """Inverse of :func:`_row_vector` (the noise covariances kept symmetric)."""
    n = i + 1
    for j, k in enumerate(_RESPONSES + _NOISES):
        avg[k][i, :n] = x[j * n:(j + 1) * n]
        if k in _NOISES:
            avg[k][:n, i] = x[j * n:(j + 1) * n]
    if "u_ell" in avg:
        avg["u_ell"][i] = x[-1]


class FlowProblem:
    """Gradient flow of the two-layer network with ``scheme`` on ``grid`` (a :class:`TimeGrid`), or on an
    adaptive grid up to ``t_max`` (``grid=None``).

    Adaptive grid: steps start at ``first`` (default sqrt(tol) / 2) and follow a local error estimate, the largest difference
    over the train and test loss between row i and its quadratic extrapolation from rows i-3..i-1 (the
    same order, h^3, as the local error of "cn" and "bdf2"): the next step is h (tol / est)^(1/3) x 0.9,
    within [h/2, growth h] and at most ``largest`` (default: no limit); at most ``max_points`` points (the per-site state is
    3 x B x max_points^2 floats).  ``nodes`` Gauss-Legendre nodes of |u| on [0, u_max], ``samples``
    antithetic paths per node (even; 0: only the noise-free twins), ``seed``, ``dim`` (the spike seed
    s(0) = 1/D); each row's corrector runs at most ``row_passes`` Anderson-accelerated passes (memory
    ``row_memory``) to ``row_tol``, or until the change stops falling below ``row_floor`` (the round-off
    floor of the sampled row); ``cholesky_cut`` as in :class:`TwoLayerDMFT`.  :meth:`solve` returns the
    observables."""

    kind = "dmft-two-layer"

    @classmethod
    def from_settings(cls, model: TwoLayerModel, options, grid: TimeGrid | None = None) -> "FlowProblem":
        """The flow problem of :class:`TwoLayerDMFT` settings with ``grid="adaptive"`` (``rtol``, t_max,
        nodes, samples, seed, dim, u_max, cholesky_cut); ``grid``: a fixed grid instead (the grid of the
        first sampling replica, for the others)."""
        problem = cls(model, grid, "bdf2", t_max=options.t_max, tol=options.rtol, max_points=MAX_POINTS,
                      nodes=options.nodes, samples=options.samples, seed=options.seed, dim=options.dim,
                      u_max=options.u_max, cholesky_cut=max(options.cholesky_cut, FLOW_CHOLESKY_CUT))
        problem.options = options
        return problem

    def __init__(self, model: TwoLayerModel, grid: TimeGrid | None = None, scheme: str = "bdf2", *,
                 t_max: float | None = None, tol: float = 1e-3, first: float | None = None, growth: float = 1.25,
                 largest: float | None = None, max_points: int = 600, nodes: int = 16, samples: int = 16, seed: int = 0,
                 dim: int = 200, u_max: float = 4.5, row_passes: int = 30, row_tol: float = 1e-9,
                 row_floor: float = 1e-8, row_memory: int = 5, cholesky_cut: float = FLOW_CHOLESKY_CUT):
        self.model, self.grid, self.scheme = model, grid, check_scheme(scheme)
        if grid is not None:
            self.t = np.array(grid.t)
            self.T1 = self.t.size
            self.co = coefficients(self.t, scheme)
            self.t_max = float(self.t[-1])
        else:
            if t_max is None:
                raise ParameterError("invalid adaptive grid without t_max: allowed is grid=TimeGrid or t_max > 0")
            self.t_max = check_positive("t_max", t_max)
            self.tol = check_positive("tol", tol, high=1.0)
            # the first steps set the error floor of a second-order scheme, ~ h^2: h = sqrt(tol) / 2
            self.first = check_positive("first", 0.5 * math.sqrt(self.tol) if first is None else first,
                                        high=self.t_max)
            self.largest = self.t_max if largest is None else check_positive("largest", largest)
            if not 1.0 <= growth < 1.0 + math.sqrt(2.0):
                raise ParameterError(f"invalid growth={growth!r}: allowed range is 1 <= growth < 1 + sqrt(2)")
            self.growth = growth
            self.T1 = check_int("max_points", max_points, 4, 20000)
            self.t = np.zeros(self.T1)
            self.co = MultistepCoefficients(*(np.zeros(self.T1) for _ in range(4)))
        self.dim, self.u_max = dim, u_max
        self.row_passes, self.row_tol, self.row_memory, self.cholesky_cut = row_passes, row_tol, row_memory, cholesky_cut
        self.row_floor = row_floor
        self.options = None
        self.run_parameters = {}
        self.dropped_mass = math.erfc(u_max / math.sqrt(2.0))
        self._draw(nodes, samples, seed)

    def _draw(self, nodes, samples, seed):
        T1 = self.T1
        x, wq = np.polynomial.legendre.leggauss(nodes)
        u = 0.5 * self.u_max * (x + 1.0)
        wq = wq * np.exp(-0.5 * u**2)
        wq /= wq.sum()
        if not self.model.even_target:  # the sign of u matters: each |u| node at +u and -u, half the weight
            u, wq = np.concatenate([u, -u]), np.concatenate([wq, wq]) / 2.0
            nodes = 2 * nodes
        half, per = samples // 2, samples + 1
        rng = np.random.default_rng(seed)
        g = rng.standard_normal((nodes, half, T1))
        n = rng.standard_normal((nodes, half))
        gauss, label, weights = np.zeros((nodes, per, T1)), np.zeros((nodes, per)), np.zeros((nodes, per))
        if samples:
            gauss[:, :half], gauss[:, half:samples] = g, -g
            label[:, :half], label[:, half:samples] = n, -n
            weights[:, :samples] = (wq / samples)[:, None]
        else:  # the twins carry the nodes' weights: exact at eps = 0 with their Gaussian correction
            weights[:, 0] = wq
        self.nodes, self.samples, self.node_weight = nodes, samples, wq
        self.gauss, self.label, self.weights = gauss.reshape(-1, T1), label.reshape(-1), weights.reshape(-1)
        self.u = np.repeat(u, per)
        self.u2 = np.repeat(u**2, per)
        self.target = evaluate(self.model.target, self.u)
        self.twins = np.arange(nodes) * per + samples
        G = np.einsum("nst,nsu->ntu", gauss[:, :samples], gauss[:, :samples]) / max(samples, 1)
        self.excess = np.eye(T1)[None] - G  # I - G_hat per node (the control variate)

    # ---------------------------------------------------------------- data side, row i
    def _data_row(self, i, fam, chol):
        """Data-side row i of every site (:func:`dmft.two_layer.flow_kernels._flow_data_row`); returns the
        rows V(i, j) and V_perp(i, j), j <= i, per site."""
        mdl, n = self.model, i + 1
        V, Vp = np.zeros((self.u2.size, n)), np.zeros((self.u2.size, n))
        S = np.ascontiguousarray(fam["par"].C[:n, :n] / self.dim)
        _flow_data_row(i, mdl.lam, 2.0 / mdl.alpha, mdl.kappa, mdl.alpha, mdl.eps, 1.0 / self.dim, mdl.noise,
                       self.gauss, self.label, self.u2, chol, fam["b"].Q, fam["z"].Q, fam["z"].C, S, self.Gam,
                       self.dDelta, self.dEll, self.m, self.Delta, self.ell, V, Vp, self.target, self.u,
                       float(self.mu[i]))
        return V, Vp

    def _averages(self, i, V, Vp, chol, avg):
        """Row i of the data-side averages, with the twins' second-moment control variate."""
        mdl, n = self.model, i + 1
        lam, kap = mdl.lam, mdl.kappa
        w, wu = self.weights, self.weights * self.u2
        Dl, ell, Gi = self.Delta, self.ell, self.Gam[:, i, :n]
        avg["Rz"][i, :n] = kap * ((w * Dl[:, i]) @ Gi)
        avg["Rpar"][i, :n] = kap * ((wu * Dl[:, i]) @ Gi)
        avg["Rb"][i, :n] = w @ self.dEll[:, i, :n]
        if mdl.weight_decay > 0.0:  # d theta/dtau = -omega theta + ...: -omega on the diagonal of every Rhat
            for k in _RESPONSES:
                avg[k][i, i] -= mdl.weight_decay
        if "u_ell" in avg:
            avg["u_ell"][i] = (w * self.u) @ ell[:, i]
        Nz = lam * kap**2 * ((w * Dl[:, i]) @ (Dl[:, :n] * V))
        Npar = lam * kap**2 * ((wu * Dl[:, i]) @ (Dl[:, :n] * Vp))
        Nb = lam * ((w * ell[:, i]) @ ell[:, :n])
        # the twins' second-moment control variate, all nodes at once (see TwoLayerProblem._control_variate_row)
        L, tw, wn, ex = chol[:n, :n], self.twins, self.node_weight, self.excess[:, :n, :n]
        P, Qc = self.cv_P[:, :n, :n], self.cv_Q[:, :n, :n]
        P[:, i, :] = self.dDelta[tw, i, :n] @ L
        Qc[:, i, :] = self.dEll[tw, i, :n] @ L
        dd = np.einsum("nij,nj->ni", P, np.einsum("nj,njk->nk", P[:, i, :], ex))
        self.train_cv[i] = wn @ dd[:, i]
        Nb = Nb + lam * (wn @ np.einsum("nij,nj->ni", Qc, np.einsum("nj,njk->nk", Qc[:, i, :], ex)))
        Nz = Nz + lam * kap**2 * (wn @ (dd * V[tw]))
        Npar = Npar + lam * kap**2 * ((wn * self.u2[tw]) @ (dd * Vp[tw]))
        for name, row in (("Nz", Nz), ("Npar", Npar), ("Nb", Nb)):
            avg[name][i, :n] = row
            avg[name][:n, i] = row

    def _cholesky_row(self, i, L, C):
        """Row i of the causal Cholesky factor of C (pivots below cholesky_cut x the largest variance cut)."""
        n = i + 1
        cholesky_extend(L[:n, :n], C[:n, :n], i, self.cholesky_cut * max(float(np.max(np.diag(C)[:n])), 0.0))

    # ---------------------------------------------------------------- as a causal problem (dmft.solvers.causal)
    def parameters(self) -> dict:
        from ..params import as_dict

        opts = as_dict(self.options) if self.options is not None else {"scheme": self.scheme}
        opts["cholesky_cut"] = self.cholesky_cut  # the cut this solver used (at least FLOW_CHOLESKY_CUT)
        return {"model": "two-layer", **as_dict(self.model), **opts, **self.run_parameters}

    def sweep(self, progress=None, checkpoint=None, start=None):
        """One pass (:meth:`solve`) as the causal driver runs it: returns (kernels, message); the
        kernels are the covariances C and weighted responses Q of the three families on the grid."""
        if checkpoint is not None or start is not None:
            raise ParameterError("invalid checkpoint_every or resume of a pass with --grid adaptive: allowed with "
                                 "--grid uniform only")
        self.solve(progress=progress)
        n = self.T_used
        kernels = {}
        for name, proc in self.processes.items():
            kernels[f"C_{name}"] = proc.C[:n, :n].copy()
            kernels[f"Q_{name}"] = proc.Q[:n, :n].copy()
        return kernels, self.message

    def observables(self, kernels=None) -> dict:
        """The observables of the last :meth:`solve` (``kernels`` are its own)."""
        return self._observables()

    def solve(self, progress=None) -> dict:
        """One causal pass over the grid.  Returns the observables (tau, train_loss, test_loss, spike,
        bulk, mean_norm); ``row_passes_used`` and ``row_change`` per row, and ``message`` (None, or where
        a site diverged: the rows after it are NaN)."""
        T1, B = self.T1, self.u2.size
        # the arrays hold `cap` rows and double when full (an adaptive grid's length is not known ahead)
        cap = T1 if self.grid is not None else min(T1, 64)
        self.Gam, self.dDelta, self.dEll = (np.zeros((B, cap, cap)) for _ in range(3))
        self.m, self.Delta, self.ell = (np.zeros((B, cap)) for _ in range(3))
        self.train_cv = np.zeros(cap)
        self.cv_P, self.cv_Q = np.zeros((self.nodes, cap, cap)), np.zeros((self.nodes, cap, cap))
        avg = {k: np.zeros((cap, cap)) for k in _RESPONSES + _NOISES}
        # mu_b (the readout mean's teacher component), its drive E[u ell_b] and its rate F = -omega mu_b + E[u ell_b]
        self.mu, self.mu_rate = np.zeros(cap), np.zeros(cap)
        if not self.model.even_target:
            avg["u_ell"] = np.zeros(cap)
        fam = {name: MultistepProcess(cap, c0) for name, c0 in _FAMILIES}
        self.processes = fam  # grown in place by _grow
        chol = np.zeros((cap, cap))
        self.row_passes_used, self.row_change, self.local_error = np.zeros(cap, dtype=int), np.zeros(cap), np.zeros(cap)
        self.message = None
        adaptive = self.grid is None
        h = self.first if adaptive else None
        used = T1
        for i in range(T1):
            n = i + 1
            if i == cap:
                cap = min(2 * cap, T1)
                chol = self._grow(cap, avg, fam, chol)
            if adaptive and i > 0:
                if self.t[i - 1] >= self.t_max:
                    used = i
                    break
                t_next = self.t[i - 1] + h
                self.t[i] = self.t_max if self.t_max - t_next < 0.3 * h else t_next
                set_step(self.co, self.t, i, self.scheme)
            if i > 0:  # predictor: responses at the same lag as the previous row, noise extrapolated in t
                r = (self.t[i] - self.t[i - 1]) / (self.t[i - 1] - self.t[i - 2]) if i > 1 else 0.0
                for k in _RESPONSES:
                    avg[k][i, 1:n] = avg[k][i - 1, :i]
                    avg[k][i, 0] = avg[k][i - 1, 0]
                for k in _NOISES:
                    N = avg[k]
                    N[i, :i] = N[i - 1, :i]
                    N[i, i] = N[i - 1, i - 1]
                    if i > 1:
                        N[i, : i - 1] += r * (N[i - 1, : i - 1] - N[i - 2, : i - 1])
                        N[i, i - 1] += r * (N[i - 1, i - 1] - N[i - 2, i - 1])
                        N[i, i] += r * (N[i - 1, i - 1] - N[i - 2, i - 2])
                    N[:i, i] = N[i, :i]
                if "u_ell" in avg:
                    avg["u_ell"][i] = avg["u_ell"][i - 1]
            # corrector: Anderson-accelerated fixed point of the row-i averages (the map: weight row,
            # Cholesky row, data row, averages)
            # Converged when neither the averages nor any site's residual Delta_i move by row_tol.
            mixer = Anderson(self.row_memory)
            x = _row_vector(avg, i)
            last_delta = None
            for k in range(self.row_passes if i > 0 else 1):
                self._weight_row(i, fam, avg)
                self._cholesky_row(i, chol, fam["b"].C)
                V, Vp = self._data_row(i, fam, chol)
                self._averages(i, V, Vp, chol, avg)
                fx = _row_vector(avg, i)
                self.row_passes_used[i] = k + 1
                with np.errstate(all="ignore"):
                    change = np.max(np.abs(fx - x))
                    if last_delta is not None:
                        change = max(change, np.max(np.abs(self.Delta[:, i] - last_delta)))
                # converged (non-finite: caught below), or at the round-off floor of the sampled row (the
                # change stops falling: the causal Cholesky of the nearly singular C_b amplifies round-off)
                floor = k >= 3 and change > 0.5 * self.row_change[i] and change < self.row_floor
                self.row_change[i] = change
                if last_delta is not None and (not change >= self.row_tol or floor):
                    break
                last_delta = self.Delta[:, i].copy()
                x = mixer.step(x, fx, 1.0)
                _set_row(avg, i, x)
            self._weight_row(i, fam, avg)  # the kernels of row i from its final averages
            with np.errstate(all="ignore"):
                if diverged(self.Delta[:, i]):
                    self.message = (f"a data-side site diverged at tau = {self.t[i]:.4g} (row {i}; |Delta| >= "
                                    f"{DIVERGENCE_BOUND:.0e} or non-finite): results are kept up to the row before")
                    self.Delta[:, i:] = np.nan
                    used = i + 1
                    break
            if progress is not None:
                progress(i)
            if adaptive and i >= 3:
                est = self._local_error(i)
                self.local_error[i] = est
                factor = 0.9 * (self.tol / est) ** (1.0 / 3.0) if est > 0 else self.growth
                h = min(self.largest, h * min(self.growth, max(0.5, factor)))
        else:
            if adaptive and self.t[T1 - 1] < self.t_max:
                self.message = (f"the adaptive grid reached max_points = {T1} at tau = {self.t[T1 - 1]:.4g} < t_max = "
                                f"{self.t_max:g}: raise tol or max_points")
        self.T_used = used
        return self._observables()

    def _row_losses(self, rows):
        """Train and test loss at the given rows."""
        mdl, w = self.model, self.weights
        live = w > 0
        train = w[live] @ self.Delta[live][:, rows] ** 2 + self.train_cv[rows]
        fam = self.processes
        test = population_test_loss(mdl.alpha, mdl.eps, self.dim, fam["z"].C[rows, rows],
                                    fam["par"].C[rows, rows] / self.dim, fam["b"].C[rows, rows], self.mu[rows],
                                    mdl.target)
        return train, test

    def _local_error(self, i):
        """|loss(t_i) - its quadratic extrapolation from rows i-3..i-1|, largest of train and test."""
        rows = np.array([i - 3, i - 2, i - 1, i])
        t = self.t[rows]
        est = 0.0
        with np.errstate(all="ignore"):
            for values in self._row_losses(rows):
                pred = 0.0
                for j in range(3):  # Lagrange basis through t[0..2], evaluated at t[3]
                    lj = 1.0
                    for k in range(3):
                        if k != j:
                            lj *= (t[3] - t[k]) / (t[j] - t[k])
                    pred += lj * values[j]
                est = max(est, abs(values[3] - pred))
        return est if math.isfinite(est) else math.inf

    def _grow(self, cap, avg, fam, chol):
        """Room for ``cap`` rows in every per-row array; returns the grown Cholesky factor."""
        for name in ("Gam", "dDelta", "dEll", "cv_P", "cv_Q"):
            setattr(self, name, pad(getattr(self, name), cap, axes=(1, 2)))
        for name in ("m", "Delta", "ell"):
            setattr(self, name, pad(getattr(self, name), cap, axes=(1,)))
        for name in ("train_cv", "row_passes_used", "row_change", "local_error", "mu", "mu_rate"):
            setattr(self, name, pad(getattr(self, name), cap))
        for k in avg:
            avg[k] = pad(avg[k], cap)  # u_ell: 1-d
        for proc in fam.values():
            proc.grow(cap)
        return pad(chol, cap)

    def _weight_row(self, i, fam, avg):
        fam["z"].row(i, self.co, avg["Rz"], avg["Nz"])
        fam["par"].row(i, self.co, avg["Rpar"], avg["Npar"])
        fam["b"].row(i, self.co, avg["Rb"], avg["Nb"])
        if "u_ell" in avg and i > 0:
            # d mu_b/dtau = -omega mu_b + E[u ell_b], by the same multistep scheme (implicit in both terms)
            co, om = self.co, self.model.weight_decay
            prev2 = co.a2[i] * self.mu[i - 2] if i > 1 else 0.0
            self.mu[i] = ((co.a1[i] * self.mu[i - 1] + prev2 + co.w[i] * avg["u_ell"][i]
                           + co.v[i] * self.mu_rate[i - 1]) / (1.0 + co.w[i] * om))
            self.mu_rate[i] = avg["u_ell"][i] - om * self.mu[i]
        elif "u_ell" in avg:
            self.mu_rate[0] = avg["u_ell"][0]

    def _observables(self) -> dict:
        mdl, w, n = self.model, self.weights, self.T_used
        with np.errstate(all="ignore"):
            train = w[w > 0] @ self.Delta[w > 0, :n] ** 2 + self.train_cv[:n]
            Cz = np.diag(self.processes["z"].C)[:n].copy()
            s = np.diag(self.processes["par"].C)[:n] / self.dim
            Cb = np.diag(self.processes["b"].C)[:n].copy()
            mu = self.mu[:n].copy()
            test = population_test_loss(mdl.alpha, mdl.eps, self.dim, Cz, s, Cb, mu, mdl.target)
        return {"tau": self.t[:n].copy(), "train_loss": train, "test_loss": test, "spike": s, "bulk": Cz,
                "mean_norm": Cb + mu * mu, "mean_overlap": mu}
