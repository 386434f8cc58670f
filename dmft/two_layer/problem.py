"""The two-layer DMFT as a problem for the solvers: fixed samples, the map F, the causal pass, readouts."""
from __future__ import annotations

import copy
import math

import numpy as np

from dmft.solvers.gaussian import propagate_all, propagate_row
from dmft.solvers.grid import available_memory
from dmft.solvers.volterra import cholesky_extend

from ..params import DIVERGENCE_BOUND, ParameterError, TwoLayerModel, as_dict, diverged, require
from .data_side import _data_side_row
from .finite_size import _bump_field_row, _cross_weights_row, _own_bump_diag
from .readouts import bump_test_correction, cross_test_correction, population_test_loss, reaction_residual
from .settings import _BUMP_PARTNERS, CROSS_KERNEL_NAMES, KERNEL_NAMES, TwoLayerDMFT
from .sweep_state import SweepState

class TwoLayerProblem:
    """The two-layer DMFT as a problem for the solvers: fixed samples, the map F, readouts.

    Sampling.  The teacher field |u| is integrated by Gauss-Legendre quadrature on
    [0, u_max] with the half-normal density; at each node ``samples`` sites carry antithetic
    (g, -g) normal vectors that drive the readout-mean noise xi_b = L g, with L the causal
    Cholesky factor of C_b (residual variances below ``cholesky_cut`` times the largest
    variance are cut).  The Cholesky factor keeps the sites independent: drawing xi_b as random
    combinations of the other sites' ell_b paths instead feeds the sampling noise back through the
    shared paths, and the run-to-run spread is ~10x larger (train loss +-0.07 at eps = 0 against a
    0.004 simulation standard error).

    Variance reduction: each node also carries a weight-zero twin site with xi_b = 0 whose
    tangents define an exactly averageable linearised site (second-moment control variate,
    :meth:`_control_variate_row`); it makes the eps = 0 (linear) case exact and cuts the
    run-to-run spread ~10x in the lazy case and ~2x in the rich case.

    Everything random is drawn once from ``options.seed``: the map :meth:`update` is
    deterministic, so the sweep and the fixed-point iteration act on the same samples and a
    checkpoint can be resumed.
    """

    kind = "dmft-two-layer"

    def __init__(self, model: TwoLayerModel, options: TwoLayerDMFT):
        self.model = model
        self.options = options
        self.T1 = options.steps + 1
        need = options.memory_bytes()
        avail = available_memory()
        if need > 0.8 * avail:
            raise ParameterError(
                f"invalid memory request: T = {options.steps} steps with {options.n_samples} samples needs "
                f"~{need / 2**30:.1f} GiB (8 (T+1)^2 ({options.matrices_per_site} "
                f"samples + 40) bytes), {avail / 2**30:.1f} GiB available; "
                f"allowed range is at most 80% of available memory: lower --samples/--nodes or t_max/dt")
        # Euler steps of the linear fit modes (rates up to 2 (1 + sqrt(lambda))^2, the Marchenko-Pastur edge)
        # are stable only for h < 1 / (1 + sqrt(lambda))^2; gradient descent with eta = h D diverges beyond.
        h_max = 1.0 / (1.0 + math.sqrt(model.lam)) ** 2
        require(options.dt < h_max, "dt", options.dt,
                f"0 < dt < 1/(1 + sqrt(1/ratio))^2 = {h_max:.4g} (Euler stability of the linear fit modes at "
                f"ratio = {model.ratio:g}; gradient descent with eta = dt*D diverges beyond it)")
        self.tau = np.arange(self.T1) * options.dt
        self.kernel_names = KERNEL_NAMES + (CROSS_KERNEL_NAMES if options.finite_size else ())
        self._draw_samples()
        self.dropped_mass = math.erfc(options.u_max / math.sqrt(2.0))
        self.last_pass = None
        # finite_size terms that a caller can leave out to measure each one's share
        # (tests/test_finite_size.py): the rate that keeps the bulk variance consistent with the
        # sites' own covariances (section 3e), and the other points' reaction to each site's own
        # bump (section 3d); both are part of the finite-size DMFT
        self.site_covariance_rate = True
        self.bump_reaction = True
        # training-set replicas (dataset_ensemble): W - w, the replica's empirical measure minus the
        # population's, per site; None for the central solve
        self.dataset_deviation = None
        # settings of the solve around this problem that change its stored answer (solve sets the
        # replicas and data sets), part of parameters() and so of every resume check
        self.run_parameters = {}

    # samples -------------------------------------------------------------------------
    def _draw_samples(self):
        o, T1 = self.options, self.T1
        x, wq = np.polynomial.legendre.leggauss(o.nodes)
        u = 0.5 * o.u_max * (x + 1.0)
        wq = wq * np.exp(-0.5 * u**2)
        wq = wq / wq.sum()  # conditional on |u| <= u_max (the cut mass is reported)
        half, S = o.samples // 2, o.samples
        per = S + 1  # sampled sites of a node, then its noise-free twin (control variate)
        rng = np.random.default_rng(o.seed)
        g = rng.standard_normal((o.nodes, half, T1))
        n = rng.standard_normal((o.nodes, half))
        gauss = np.zeros((o.nodes, per, T1))
        gauss[:, :half], gauss[:, half:S] = g, -g
        label = np.zeros((o.nodes, per))
        label[:, :half], label[:, half:S] = n, -n
        weights = np.zeros((o.nodes, per))
        weights[:, :S] = (wq / S)[:, None]
        self.gauss = np.ascontiguousarray(gauss.reshape(-1, T1))
        if o.finite_size:  # drawn after the D -> inf samples, which stay the same
            gq = rng.standard_normal((o.nodes, half, T1))
            gauss_q = np.zeros((o.nodes, per, T1))
            gauss_q[:, :half], gauss_q[:, half:S] = gq, -gq
            self.gauss_q = np.ascontiguousarray(gauss_q.reshape(-1, T1))
            # bump field: each sampled site sees K other training points drawn from the sites, with
            # Gaussian weights of the variance of (x_mu.x_nu)^2 - 1/D, 2/D^2, scaled so that K of the
            # P points stand for all of them; antithetic like xi_b (the pair's linear parts cancel)
            # Partners are drawn uniformly over the sampled sites and weighted by sqrt(w N): the
            # large-|u| sites, whose bumps dominate, are then as well sampled as the others.
            w_all = weights.reshape(-1)
            K = _BUMP_PARTNERS
            live = np.flatnonzero(w_all > 0)
            pick = live[rng.integers(0, live.size, size=(o.nodes, half, K))]
            e = (rng.standard_normal((o.nodes, half, K)) * np.sqrt(w_all[pick] / w_all.sum() * live.size)
                 * math.sqrt(2.0 * self.model.ratio * o.dim / K) / o.dim)
            partners = np.zeros((o.nodes, per, K), dtype=np.int64)
            omegas = np.zeros((o.nodes, per, K))  # zero for the noise-free twins of the control variate
            partners[:, :half], partners[:, half:S] = pick, pick
            omegas[:, :half], omegas[:, half:S] = e, -e
            partners, omegas = partners.reshape(-1, K), omegas.reshape(-1, K)
            # zeta_mu sums the bumps of the *other* points: a site drawn as its own partner, or its
            # antithetic mirror (same u, mirrored paths, a nearly equal bump), would feed its own bump
            # back into its covariance, a self-feedback the networks do not have (it did not remove the
            # rare runaways, docs/finite-size.md section 5c).  Those partners get zero weight, and the site's
            # remaining weights are rescaled to keep the variance of zeta.
            site = np.arange(partners.shape[0])
            within = site % per
            mirror = np.where(within < half, site + half, np.where(within < S, site - half, -1))
            own = (partners == site[:, None]) | (partners == mirror[:, None])
            omegas[own] = 0.0
            omegas *= np.sqrt(K / np.maximum(K - own.sum(axis=1), 1))[:, None]
            self.partners, self.omegas = partners, omegas
            # bulk norm n = |x_perp|^2 of each sampled site: chi^2_{D-1}/D, here 1 + sqrt(2/D) g (antithetic
            # with the site's other draws; 1 for the noise-free twins), floored at 1/D (a norm is
            # positive; the floor is reached with probability < 1e-6 for D >= 50)
            gn = rng.standard_normal((o.nodes, half))
            norm = np.ones((o.nodes, per))
            norm[:, :half], norm[:, half:S] = 1.0 + math.sqrt(2.0 / o.dim) * gn, 1.0 - math.sqrt(2.0 / o.dim) * gn
            self.bulk_norm = np.ascontiguousarray(np.maximum(norm.reshape(-1), 1.0 / o.dim))
        else:
            self.gauss_q = np.zeros((1, 1))
            self.partners, self.omegas = np.zeros((1, 1), dtype=np.int64), np.zeros((1, 1))
            self.bulk_norm = np.ones(o.nodes * (S + 1))
        self.label_noise = label.reshape(-1)
        self.weights = weights.reshape(-1)
        self.u = np.repeat(u, per)
        self.u2 = self.u**2
        self.node_weight = wq
        self.twins = np.arange(o.nodes) * per + S
        if o.control_variate:
            # I - G_hat: excess of the identity over each node's empirical second moment of g
            self.excess = np.eye(T1)[None] - np.einsum("nst,nsu->ntu", gauss[:, :S], gauss[:, :S]) / S
        self.control_variate = o.control_variate
        # batches of whole antithetic pairs, across every node, for within-run error bars
        self.n_batches = min(16, half)
        k = np.arange(per)
        batch = np.where(k < S, (k % half) % self.n_batches, -1)
        self.batch_of = np.tile(batch, o.nodes)

    def parameters(self) -> dict:
        return {"model": "two-layer", **as_dict(self.model), **as_dict(self.options), **self.run_parameters}

    # kernels -------------------------------------------------------------------------
    def initial_kernels(self) -> dict:
        """Frozen network: R = 1 below the diagonal, C_z = 1, C_par = 1 (s = 1/D), C_b = 0."""
        T1 = self.T1
        R = np.tril(np.ones((T1, T1)), -1)
        K = {"R_z": R.copy(), "C_z": np.ones((T1, T1)), "R_par": R.copy(), "C_par": np.ones((T1, T1)),
             "R_b": R.copy(), "C_b": np.zeros((T1, T1))}
        if self.options.finite_size:
            K.update({"R_q": R.copy(), "C_q": np.zeros((T1, T1))})
        return K

    def _run(self, K, sweep, progress=None, checkpoint=None, start=None):
        """One pass over t = 0..T.  sweep=True fills row t of K (weight side) before the data
        side of row t uses it: the causal solution.  sweep=False keeps K fixed (map F).
        ``checkpoint(t, snapshot)`` is called after row t; ``snapshot()`` returns (kernels,
        observables, pass tree) of the pass so far.  ``start``: a pass tree to continue from
        (the pass then runs rows ``start["next_row"]``..T, bit-identical to an uninterrupted pass).
        Returns (state: SweepState, last_good_step, message)."""
        T1, o, mdl = self.T1, self.options, self.model
        B = self.u2.shape[0]
        st = SweepState.empty(B, T1, o.finite_size)
        rows = [np.zeros((B, T1)) for _ in range(7)]
        out_Rz, out_Nz, out_Npar, out_Nb, out_Rb, out_V, out_Vperp = rows
        cross = o.finite_size
        if cross:
            out_Rq, out_pull = np.zeros((B, T1)), np.zeros(B)
            out_Rpar = np.zeros((B, T1))
            # the spike path is rank one to ~1e-3 (z_par(t) = phi(t) Z): phi = sqrt(s(t,t)), causal
            phi_hat = np.zeros(T1) if sweep else np.sqrt(np.maximum(np.diag(K["C_par"]), 0.0) / o.dim)
            C_q = K["C_q"]
        else:
            out_Rq, out_pull = np.zeros((1, 1)), np.zeros(1)
            out_Rpar = np.zeros((1, 1))
            phi_hat = np.zeros(1)
            C_q = np.zeros((1, 1))
        cv = self._control_variate_state() if self.control_variate else None
        S = np.zeros((T1, T1)) if sweep else np.ascontiguousarray(K["C_par"] / o.dim)
        # everything else a pass carries from row to row (restored in place on a resume)
        scratch = {"out_Rz": out_Rz, "out_Nz": out_Nz, "out_Npar": out_Npar, "out_Nb": out_Nb, "out_Rb": out_Rb,
                   "out_V": out_V, "out_Vperp": out_Vperp, "out_Rq": out_Rq, "out_pull": out_pull,
                   "out_Rpar": out_Rpar, "phi_hat": phi_hat, "C_q": C_q, "S": S}
        t0 = 0
        if start is not None:
            st, t0 = self._restore_pass(start, K, scratch, cv)
        avg = st.avg
        w, wu = self.weights, self.weights * self.u2

        def snapshot(t):
            tree = {"next_row": t + 1, "samples_digest": self.samples_digest(), "kernels": dict(K),
                    "state": st.to_tree(), "scratch": scratch, "cv": cv or {}}
            return K, self._partial_observables(K, st, t), tree

        for t in range(t0, T1):
            if sweep:
                self._weight_side_row(t, avg, K, st.phi)
                S[t, : t + 1] = K["C_par"][t, : t + 1] / o.dim
                S[: t + 1, t] = S[t, : t + 1]
                if cross:
                    phi_hat[t] = math.sqrt(max(K["C_par"][t, t], 0.0) / o.dim)
                    # only the response R_q is used: the covariance of q comes from the sites (C_q below)
                    propagate_row(t, avg["Rhat_q"], st.zero, o.dt, 0.0, st.Phi_q, K["R_q"], st.C_scratch)
            if cross:
                # the cross direction's weights at row t need the sites' rows < t only
                _cross_weights_row(t, o.dt, mdl.lam, mdl.kappa, 1.0 / o.dim, self.u2, st.Gam, K["C_z"], K["R_z"],
                                   K["R_q"], K["R_par"], st.Delta, st.p_spk, st.c_spk, phi_hat, st.Vfull,
                                   st.Wq, C_q)
                Wq = st.Wq
                row = mdl.kappa ** 2 * mdl.lam * ((w * Wq[:, t]) @ Wq[:, : t + 1])
                avg["C_q"][t, : t + 1] = row
                avg["C_q"][: t + 1, t] = row
                if sweep:
                    C_q[t, : t + 1] = row
                    C_q[: t + 1, t] = row
            n = t + 1
            if cross:
                cholesky_extend(st.chol_q[:n, :n], C_q[:n, :n], t,
                                o.cholesky_cut * max(float(np.max(np.diag(C_q)[:n])), 0.0))
            # causal Cholesky row t of C_b; a residual variance below cholesky_cut * max variance is cut
            cholesky_extend(st.chol[:n, :n], K["C_b"][:n, :n], t,
                            o.cholesky_cut * max(float(np.max(np.diag(K["C_b"])[:n])), 0.0))
            if cross:
                _bump_field_row(t, K["C_z"], S, C_q, self.u2, st.chi, phi_hat, st.Vfull, st.Czs,
                                self.bulk_norm, self.partners, self.omegas, st.bump)
            _data_side_row(t, o.dt, mdl.lam, mdl.alpha, mdl.eps, 1.0 / o.dim, mdl.noise, self.u2,
                           self.label_noise, self.gauss, st.chol, K["R_z"], K["C_z"], S, K["R_b"], st.Gam, st.dDelta,
                           st.dEll, st.m, st.Delta, st.ell, out_Rz, out_Nz, out_Npar, out_Nb, out_Rb,
                           out_V, out_Vperp, cross, phi_hat, C_q, st.chol_q, self.gauss_q, st.chi,
                           st.p_spk, st.c_spk, out_Rq, out_pull, K["R_par"], st.Gamc, out_Rpar,
                           st.dDv, st.dEv, st.Vfull, st.Czs, self.bulk_norm, st.react)
            if cross:  # E[b(t,t)^2] over the sites, for the test loss (bump_test_correction)
                b_tt = np.empty(B)
                _own_bump_diag(t, K["C_z"], S, C_q, self.u2, st.chi, phi_hat, st.Vfull, st.Czs, self.bulk_norm, b_tt)
                with np.errstate(all="ignore"):
                    st.bump2[t] = w @ b_tt**2
                    if self.bump_reaction:
                        st.react[:, t] = reaction_residual(mdl.alpha, mdl.eps, mdl.ratio, o.dim, b_tt)
            with np.errstate(all="ignore"):  # a diverging site is detected just below, not warned about
                st.trace_drive[t] = w @ (st.Delta[:, t] * out_V[:, t])  # E[Delta V(t,t)], trace_sum_rule
                avg["Rhat_z"][t, :n] = w @ out_Rz[:, :n]
                if cross and self.site_covariance_rate:
                    avg["Rhat_z"][t, t] += self._site_covariance_rate(t, st, K["C_z"])
                avg["Rhat_par"][t, :n] = wu @ (out_Rpar if cross else out_Rz)[:, :n]
                avg["Rhat_b"][t, :n] = w @ out_Rb[:, :n]
                if cross:
                    avg["Rhat_q"][t, :n] = w @ out_Rq[:, :n]
                    if phi_hat[t] > 0.0:  # the coherent pull acts as an extra growth rate of z_par = sqrt(D) phi Z
                        pull = float(w @ out_pull)
                        if self.dataset_deviation is not None:
                            # a training set's own pull: the sum over its P points of u Delta c, whose
                            # finite-P part the exact chi-average drops (docs/finite-size.md, section 4)
                            pull += float(self.dataset_deviation
                                          @ (self.u * st.Delta[:, t] * st.c_spk[:, t] - out_pull))
                        avg["Rhat_par"][t, t] += mdl.kappa * pull / phi_hat[t]
                corr = self._control_variate_row(t, st, cv, out_V, out_Vperp) if cv is not None else {}
                for name, r in (("N_z", out_Nz), ("N_par", out_Npar), ("N_b", out_Nb)):
                    row = w @ r[:, :n]
                    if name in corr:
                        row = row + corr[name]
                    avg[name][t, :n] = row
                    avg[name][:n, t] = row
            with np.errstate(all="ignore"):
                exploded = diverged(st.Delta[:, t])
            if exploded or not all(np.all(np.isfinite(a[t, :n])) for a in avg.values()):
                message = self._divergence_message(t, st)
                st.Delta[:, t:] = np.nan
                return st, t - 1, message
            if checkpoint is not None:
                checkpoint(t, lambda: snapshot(t))
            if progress is not None:
                progress(t)
        return st, T1 - 1, None

    # checkpoints of a pass -------------------------------------------------------------
    def samples_digest(self) -> str:
        """BLAKE2b of every random draw of this problem (the same seed must give the same samples
        for a checkpointed pass to be continued)."""
        import hashlib

        h = hashlib.blake2b(digest_size=16)
        for arr in (self.gauss, self.label_noise, self.weights, self.gauss_q, self.partners, self.omegas,
                    self.bulk_norm):
            a = np.ascontiguousarray(arr)
            h.update(a.dtype.str.encode() + repr(a.shape).encode() + a.reshape(-1).view(np.uint8).tobytes())
        return h.hexdigest()

    def _restore_pass(self, tree, K, scratch, cv):
        """Copy a stored pass (``_run``'s snapshot) into the arrays of a new pass; returns
        (state, next row)."""
        from dmft.solvers.checkpoint import ResumeMismatchError

        digest = str(tree["samples_digest"])
        if digest != self.samples_digest():
            raise ResumeMismatchError("cannot resume the sweep: the samples drawn from this seed differ from the "
                                      f"checkpoint's (digest {digest}, now {self.samples_digest()}): another numpy "
                                      "random generator?")
        for k in K:
            K[k][...] = tree["kernels"][k]
        for name, arr in scratch.items():
            arr[...] = tree["scratch"][name]
        if cv is not None:
            for name, arr in cv.items():
                arr[...] = tree["cv"][name]
        return SweepState.from_tree(tree["state"]), int(tree["next_row"])

    def _partial_observables(self, K, st, t) -> dict:
        """Observables of a pass that has done rows 0..t (NaN after row t)."""
        kept = self.last_pass
        self.last_pass = st
        try:
            with np.errstate(all="ignore"):
                obs = self.observables_from(K, st.Delta)
        finally:
            self.last_pass = kept
        later = np.arange(self.T1) > t
        for name, value in obs.items():
            if name != "tau" and np.shape(value) == (self.T1,):
                obs[name] = np.where(later, np.nan, value)
        return obs

    # control variate ------------------------------------------------------------------
    def _control_variate_state(self):
        o, T1 = self.options, self.T1
        return {"P": np.zeros((o.nodes, T1, T1)), "Q": np.zeros((o.nodes, T1, T1))}

    def _control_variate_row(self, t, st, cv, out_V, out_Vperp):
        """Second-moment control variate at row t (see the class docstring).

        Each node carries a twin site driven by xi_b = 0 (weight 0).  Its tangents
        D = d Delta / d xi_b and E = d ell_b / d xi_b give the linearised sites
        Delta_lin = Delta_0 + D xi,  ell_lin = ell_0 + E xi, whose Gaussian averages are exact:
        E[ell_lin ell_lin^T] = ell_0 ell_0^T + E C_b E^T.  With antithetic pairs the sampled
        mean of the linear parts is exact, so the correction is E (C_b - C_hat) E^T with
        C_hat = L G_hat L^T the node's empirical covariance of its paths: the sampling error
        of the second moments of xi_b is removed to first order in the site's nonlinearity.
        Returns corrections to the rows t of N_b, N_z, N_par (and accumulates the train loss one).
        """
        o, mdl = self.options, self.model
        n = t + 1
        L = st.chol[:n, :n]
        kappa2 = mdl.kappa ** 2
        corr = {"N_b": np.zeros(n), "N_z": np.zeros(n), "N_par": np.zeros(n)}
        for node in range(o.nodes):
            tw = self.twins[node]
            P, Q = cv["P"][node], cv["Q"][node]
            P[t, :n] = st.dDelta[tw, t, :n] @ L
            Q[t, :n] = st.dEll[tw, t, :n] @ L
            excess = self.excess[node][:n, :n]  # I - G_hat on the node's normals
            p_t = P[t, :n] @ excess
            q_t = Q[t, :n] @ excess
            wn = self.node_weight[node]
            dd = P[:n, :n] @ p_t  # (D (C_b - C_hat) D^T)(t, s'), s' <= t
            st.train_cv[t] += wn * dd[t]
            corr["N_b"] += mdl.lam * wn * (Q[:n, :n] @ q_t)
            corr["N_z"] += mdl.lam * kappa2 * wn * dd * out_V[tw, :n]
            corr["N_par"] += mdl.lam * kappa2 * wn * self.u2[tw] * dd * out_Vperp[tw, :n]
        return corr

    def _site_covariance_rate(self, t, st, C_z):
        """Equal-time rate of the bulk coordinate that keeps its variance consistent with the sites'
        own covariances (finite_size; docs/finite-size.md, section 3e).

        The bulk variance grows by the coordinate's covariance with the fields of the points that
        kick it: its first-order drift is kappa E[Delta(t) (Gamma C_site)(t,t)] + (memory term), where
        a site's own bulk covariance is C_site = n (C_z + zeta) (bulk norm n, bump field zeta).  The
        response term Rhat_z * C_z = kappa E[Delta Gamma] C_z has the common C_z instead, and the two
        differ because a site's residual is correlated with its own zeta and n (Delta contains
        -a n zeta): the excess X(t) = kappa E[Delta(t) (Gamma (n (C_z + zeta) - C_z))(t,t)] < 0 is the
        trace of the other points' reaction to the memorised bumps (section 3d).  It is added as a
        rate X / C_z(t,t) to Rhat_z(t,t): exact for the equal-time drift (this part of the networks'
        sum rule, :meth:`trace_sum_rule`); as a rate it also slows the response R_z, i.e. it shrinks
        every point's memory in proportion to the memory, the mean-field form of the reaction (the
        networks' reaction is stronger for larger bumps).  X = O(1/D)."""
        n = t + 1
        site = st.Czs[:, :n, t] * self.bulk_norm[:, None] - C_z[None, :n, t]
        excess = np.einsum("bk,bk->b", st.Gam[:, t, :n], site)
        X = self.model.kappa * float(self.weights @ (st.Delta[:, t] * excess))
        return X / max(C_z[t, t], 1e-300)

    def _weight_side_row(self, t, avg, K, phis):
        h = self.options.dt
        propagate_row(t, avg["Rhat_z"], avg["N_z"], h, 1.0, phis[0], K["R_z"], K["C_z"])
        propagate_row(t, avg["Rhat_par"], avg["N_par"], h, 1.0, phis[1], K["R_par"], K["C_par"])
        propagate_row(t, avg["Rhat_b"], avg["N_b"], h, 0.0, phis[2], K["R_b"], K["C_b"])

    def _divergence_message(self, t, st):
        with np.errstate(all="ignore"):
            size = np.abs(st.Delta[:, t])
        size[~np.isfinite(size)] = np.inf
        i = int(np.argmax(size))
        return (f"a data-side site diverged at tau = {t * self.options.dt:.4g} (step {t}; teacher field "
                f"|u| = {self.u[i]:.3g}, {int(np.sum(size >= DIVERGENCE_BOUND))} of {size.size} sites with "
                f"|Delta| >= {DIVERGENCE_BOUND:.0e} or non-finite; results are kept up to tau = {(t - 1) * self.options.dt:.4g}): "
                f"the Euler step "
                f"dt = {self.options.dt} is unstable there; lower --dt (or --u-max)"
                + ("; with --finite-size at small D the finite-size terms can grow faster than the D -> inf ones "
                   "(seen at D <= 50 with alpha eps >= 0.15): also try a larger --dim, or without --finite-size"
                   if self.options.finite_size else ""))

    # the two methods -----------------------------------------------------------------
    def sweep(self, progress=None, checkpoint=None, start=None):
        """Causal one-pass solution.  Returns (kernels, message); on divergence the message
        says where, kernel rows after the last good step are NaN, and the rows before are kept.
        A row is good when every site's residual and the train loss are finite and below
        :data:`dmft.params.DIVERGENCE_BOUND`.  ``checkpoint(t, snapshot)`` after each row and
        ``start`` (a stored pass to continue): see :meth:`_run` and :func:`dmft.solvers.causal.sweep`."""
        T1 = self.T1
        K = {k: np.zeros((T1, T1)) for k in self.kernel_names}
        st, last, message = self._run(K, sweep=True, progress=progress, checkpoint=checkpoint, start=start)
        self.last_pass = st
        # each site's |Delta| stays below the bound up to `last`, yet their mean square can exceed it
        with np.errstate(all="ignore"):
            train = self._train_loss(st.Delta[:, : last + 1])
        above = [t for t in range(last + 1) if diverged(train[t])]
        if above:
            t = above[0]
            message = (f"the train loss reached {train[t]:.3g} at tau = {t * self.options.dt:.4g} (step {t}; "
                       f"non-finite or >= {DIVERGENCE_BOUND:.0e}; results are kept up to tau = "
                       f"{(t - 1) * self.options.dt:.4g}): the Euler step dt = {self.options.dt} is unstable; "
                       "lower --dt")
            last = t - 1
            st.Delta[:, t:] = np.nan
        if message is not None:
            for k in self.kernel_names:
                K[k][last + 1:, :] = np.nan
                K[k][:, last + 1:] = np.nan
        self.last_good = last
        return K, message

    def update(self, kernels: dict, progress=None) -> dict:
        """The fixed-point map F: the data side on the given kernels, then the exact weight side.
        The pass becomes ``last_pass`` (what the readouts use); ``progress(t)`` after row t."""
        T1, h = self.T1, self.options.dt
        K = {k: np.ascontiguousarray(kernels[k]) for k in self.kernel_names}
        st, last, message = self._run(K, sweep=False, progress=progress)
        self.last_pass = st
        if message is not None:
            return {k: np.full_like(K[k], np.nan) for k in self.kernel_names}
        new = {k: np.zeros_like(K[k]) for k in self.kernel_names}
        avg = st.avg
        propagate_all(avg["Rhat_z"], avg["N_z"], h, 1.0, np.zeros(T1), new["R_z"], new["C_z"])
        propagate_all(avg["Rhat_par"], avg["N_par"], h, 1.0, np.zeros(T1), new["R_par"], new["C_par"])
        propagate_all(avg["Rhat_b"], avg["N_b"], h, 0.0, np.zeros(T1), new["R_b"], new["C_b"])
        if self.options.finite_size:
            new["C_q"][:] = avg["C_q"]
            propagate_all(avg["Rhat_q"], np.zeros((T1, T1)), h, 0.0, np.zeros(T1), new["R_q"], np.zeros((T1, T1)))
        return new

    def readout_pass(self) -> SweepState:
        """The per-site curves of the last pass that the readouts use (Delta, the control variate's
        train_cv, bump2, the averages), without its (sites x T x T) state."""
        return self.last_pass.readouts()

    def confirm(self, kernels: dict, progress=None) -> dict:
        """F(K) for the causal driver's confirmation: the readouts stay on the sweep's pass.  The sweep's
        (sites x T x T) state is dropped first, so that the two passes never both hold theirs
        (:meth:`TwoLayerDMFT.memory_bytes` is the memory of one)."""
        kept = self.readout_pass()
        self.last_pass = kept
        new = self.update(kernels, progress=progress)
        self.last_pass = kept
        return new

    def reweighted(self, weights, deviation=None) -> "TwoLayerProblem":
        """The same sites and samples with other weights (a training-set replica, :func:`dataset_ensemble`);
        ``deviation`` = W - w, the replica's empirical measure minus the population's, per site.  The
        samples are shared (read only), this problem is left as it is."""
        new = copy.copy(self)
        new.weights = np.asarray(weights, dtype=float)
        new.dataset_deviation = deviation
        new.last_pass = None
        return new

    # readouts ------------------------------------------------------------------------
    def observables_from(self, K, Delta) -> dict:
        """Losses and order parameters from kernels and the per-site residuals of a pass."""
        mdl, o = self.model, self.options
        Cz = np.diag(K["C_z"]).copy()
        s = np.diag(K["C_par"]) / o.dim
        Cb = np.diag(K["C_b"]).copy()
        with np.errstate(all="ignore"):
            train = self._train_loss(Delta)
            test = population_test_loss(mdl.alpha, mdl.eps, o.dim, Cz, s, Cb)
        out = {"tau": self.tau.copy(), "train_loss": train, "test_loss": test, "spike": s, "bulk": Cz,
               "mean_norm": Cb}
        if o.finite_size:
            Cq = np.diag(K["C_q"]).copy()
            out["test_loss"] = test + cross_test_correction(mdl.alpha, mdl.eps, s, Cq)
            if self.last_pass is not None and self.last_pass.bump2 is not None:
                out["test_loss"] = out["test_loss"] + bump_test_correction(
                    mdl.alpha, mdl.eps, mdl.ratio, o.dim, Cz, self.last_pass.bump2)
            out["spike_bulk_cross"] = s * Cq
        return out

    def trace_sum_rule(self, K) -> dict:
        """Both sides of the exact trace sum rule, from kernels K and the last pass over them.

        In the networks, with A(t) the common linear map of the neurons (w_i(t) = A w_i(0) + b),
        Euler steps of the loss give exactly d tr(A A^T)/D / dtau = 2 kappa E_mu[Delta_mu V_mu] + O(h),
        V_mu = x_mu^T A A^T x_mu, whatever D.  In the DMFT tr(A A^T)/D = C_z(t,t) + s(t,t) and each
        weight-side process grows by twice its first-order drift E[theta(t) (xi(t) + sum Rhat theta)]:

            weight_side(t) = sum_{t''<=t} Rhat_z(t,t'') C_z(t'',t) + h sum_{s<t} R_z(t,s) N_z(s,t)
                             + (the same for z_par) / D
            data_side(t)   = kappa E[Delta(t) V(t,t)]          (the sites' own average)

        The D -> inf DMFT satisfies it to O(h) (1.5% at c1, h = 0.4); ``finite_size`` terms that change
        a site's V must come with their weight-side counterpart, and the difference shows where they
        do not (docs/finite-size.md, section 3e).  Returns tau, weight_side, data_side (per unit tau,
        halved); the pass is the last :meth:`sweep` or :meth:`update` over K."""
        self._require_pass("trace_sum_rule()")
        st, h, D = self.last_pass, self.options.dt, self.options.dim
        avg = st.avg

        def drift(Rhat, N, R, C):
            out = np.zeros(self.T1)
            for t in range(self.T1):
                out[t] = Rhat[t, : t + 1] @ C[: t + 1, t] + h * (R[t, :t] @ N[:t, t])
            return out

        weight = (drift(avg["Rhat_z"], avg["N_z"], K["R_z"], K["C_z"])
                  + drift(avg["Rhat_par"], avg["N_par"], K["R_par"], K["C_par"]) / D)
        return {"tau": self.tau.copy(), "weight_side": weight,
                "data_side": self.model.kappa * st.trace_drive.copy()}

    def _require_pass(self, what):
        if self.last_pass is None:
            raise RuntimeError(f"{what} reads the last pass over the kernels: run sweep() or update(kernels) first")

    def observables(self, kernels) -> dict:
        """Readouts of ``kernels`` and of the last pass (:meth:`sweep`, :meth:`update` or :meth:`confirm`)."""
        self._require_pass("observables()")
        return self.observables_from(kernels, self.last_pass.Delta)

    def _train_loss(self, Delta) -> np.ndarray:
        """The train loss at the first ``Delta.shape[1]`` times from the per-site residuals of the last
        pass (with its control variate)."""
        train = self.weights[self.weights > 0] @ Delta[self.weights > 0] ** 2
        if self.last_pass is not None and self.control_variate:
            train = train + self.last_pass.train_cv[: Delta.shape[1]]
        return train

    def batch_error(self, Delta) -> np.ndarray:
        """Within-run standard error of the train loss from the per-site residuals of a pass: the
        spread of the loss over the sites' batches, at fixed kernels (NaN with fewer than 2 batches)."""
        with np.errstate(all="ignore"):
            sq = Delta[self.weights > 0] ** 2
            nb = self.n_batches
            per_batch = np.zeros((nb, sq.shape[1]))
            w, batch = self.weights[self.weights > 0], self.batch_of[self.weights > 0]
            for k in range(nb):
                sel = batch == k
                per_batch[k] = (w[sel] @ sq[sel]) / w[sel].sum()
            return per_batch.std(axis=0, ddof=1) / math.sqrt(nb) if nb >= 2 else np.full(sq.shape[1], np.nan)

    def errors(self, kernels) -> dict:
        """Standard errors of the readouts of the last pass: {"batch": {"train_loss": ...}} (:meth:`batch_error`)."""
        self._require_pass("errors()")
        return {"batch": {"train_loss": self.batch_error(self.last_pass.Delta)}}
