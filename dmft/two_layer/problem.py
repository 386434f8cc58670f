"""The two-layer DMFT as a problem for the solvers: fixed samples, the map F, the causal pass, readouts."""
from __future__ import annotations

import copy
import math

import numpy as np

from dmft.solvers.gaussian import propagate_all, propagate_row
from dmft.solvers.grid import available_memory
from dmft.solvers.volterra import cholesky_extend

from ..params import DIVERGENCE_BOUND, ParameterError, TwoLayerModel, as_dict, diverged, require
from ..target import DEFAULT_TARGET, evaluate
from .data_side import RowConstants, RowKernels, Sites, SiteRows, SiteState, _data_side_row
from .readouts import population_test_loss
from .settings import KERNEL_NAMES, TwoLayerDMFT
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
    #: appended to the message of a diverged pass
    divergence_hint = ""
    #: kernels beyond KERNEL_NAMES (a variant's own)
    extra_kernel_names: tuple = ()
    #: the problem classes of variants of the DMFT, by the setting that selects them; filled by
    #: :func:`register_variant` (``finite_size``: :mod:`dmft.two_layer.finite_size_problem`)
    variants: dict = {}

    def __new__(cls, model=None, options=None):
        # TwoLayerProblem(model, options) builds the variant that the settings select
        if cls is TwoLayerProblem and options is not None:
            chosen = [variant for setting, variant in cls.variants.items() if getattr(options, setting)]
            cls = chosen[0] if chosen else cls
        return super().__new__(cls)

    def __init__(self, model: TwoLayerModel, options: TwoLayerDMFT):
        self.model = model
        self.options = options
        self.T1 = options.steps + 1
        # an odd target makes the sign of u matter: each |u| node is taken at +u and -u
        self.signs = 1 if model.even_target else 2
        self.n_nodes = options.nodes * self.signs
        need = options.memory_bytes() * self.signs
        avail = available_memory()
        if need > 0.8 * avail:
            raise ParameterError(
                f"invalid memory request: T = {options.steps} steps with {options.n_samples} samples needs "
                f"~{need / 2**30:.1f} GiB (8 (T+1)^2 ({options.matrices_per_site} "
                f"samples + 40) bytes), {avail / 2**30:.1f} GiB available; "
                f"allowed range is at most 80% of available memory: lower --samples/--nodes or t_max/dt")
        # Euler steps of the linear fit modes (rates up to 2 (1 + sqrt(lambda))^2, the Marchenko-Pastur edge)
        # are stable only for h < 1 / (1 + sqrt(lambda))^2; gradient descent with eta = h D diverges beyond.  A
        # Bernoulli batch of fraction b is a data set of b P points with the gradient 1/b larger: lambda / b.
        frac = model.batch_fraction
        h_max = 1.0 / (1.0 + math.sqrt(model.lam / frac)) ** 2
        require(options.dt < h_max, "dt", options.dt,
                f"0 < dt < 1/(1 + sqrt(1/(ratio b)))^2 = {h_max:.4g} (Euler stability of the linear fit modes at "
                f"ratio = {model.ratio:g}, batch fraction b = {frac:g}; gradient descent with eta = dt*D diverges "
                "beyond it)")
        if options.finite_size:
            require(model.target == DEFAULT_TARGET and model.batch_fraction == 1.0, "finite_size", True,
                    "False unless target = (0.5, 0, 0.5) and batch_fraction = 1 (the finite-size terms are derived "
                    "for full-batch descent on the quadratic target)")
        require(options.dt * model.weight_decay < 1.0, "weight_decay", model.weight_decay,
                f"0 <= weight_decay < 1/dt = {1.0 / options.dt:.4g} (each step multiplies the weights by "
                "1 - dt * weight_decay, which must stay positive)")
        self.tau = np.arange(self.T1) * options.dt
        # mu_b(t) = b.beta / D, the readout mean's teacher component: zero for an even target
        self.kernel_names = KERNEL_NAMES + self.extra_kernel_names + (() if model.even_target else ("mu_b",))
        self._draw_samples()
        self.dropped_mass = math.erfc(options.u_max / math.sqrt(2.0))
        self.last_pass = None
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
        if self.signs == 2:  # the nodes at +u, then at -u, each with half the weight
            u, wq = np.concatenate([u, -u]), np.concatenate([wq, wq]) / 2.0
        nodes = self.n_nodes
        half, S = o.samples // 2, o.samples
        rng = np.random.default_rng(o.seed)
        g = rng.standard_normal((nodes, half, T1))
        n = rng.standard_normal((nodes, half))
        sgd = self.model.batch_fraction < 1.0
        per = S + 1  # sampled sites of a node, then its noise-free twin (control variate)
        gauss = np.zeros((nodes, per, T1))
        gauss[:, :half], gauss[:, half:S] = g, -g
        label = np.zeros((nodes, per))
        label[:, :half], label[:, half:S] = n, -n
        weights = np.zeros((nodes, per))
        weights[:, :S] = (wq / S)[:, None]
        self.gauss = np.ascontiguousarray(gauss.reshape(-1, T1))
        self._draw_variant_samples(rng, weights)
        self.label_noise = label.reshape(-1)
        self.weights = weights.reshape(-1)
        self.u = np.repeat(u, per)
        self.u2 = self.u**2
        self.target = evaluate(self.model.target, self.u)
        self.node_weight = wq
        self.twins = np.arange(nodes) * per + S
        # minibatch SGD: the selection weights sigma(t) = s(t) / b, s(t) ~ Bernoulli(b), one path per antithetic pair
        # (its linear parts still cancel), drawn last so that the other draws do not depend on b.  The twins' control
        # variate is off: with a twin per pair on the pair's path it is exact to linear order but, fed back through
        # the kernels, runs away once the spike grows (alpha 1, eps 0.1, P/D 5.5, b 0.5: both of two seeds at
        # tau = 15, where the networks and the DMFT without it go on); a twin on another path runs away too.
        self.sel = np.ones((nodes * per, T1))
        if sgd:
            b = self.model.batch_fraction
            picks = (rng.random((nodes, half, T1)) < b) / b
            sel = np.zeros((nodes, per, T1))
            sel[:, :half], sel[:, half:S], sel[:, S] = picks, picks, 1.0
            self.sel = np.ascontiguousarray(sel.reshape(-1, T1))
        self.control_variate = o.control_variate and not sgd
        if self.control_variate:
            # I - G_hat: excess of the identity over each node's empirical second moment of g
            self.excess = np.eye(T1)[None] - np.einsum("nst,nsu->ntu", gauss[:, :S], gauss[:, :S]) / S
        # batches of whole antithetic pairs, across every node, for within-run error bars
        self.n_batches = min(16, half)
        k = np.arange(per)
        batch = np.where(k < S, (k % half) % self.n_batches, -1)
        self.batch_of = np.tile(batch, nodes)

    def _draw_variant_samples(self, rng, weights):
        """A variant's own draws, from ``rng`` after the D -> inf samples (which stay the same);
        ``weights``: (nodes, samples + 1) site weights."""

    def _sample_arrays(self) -> tuple:
        """Every random draw of this problem (:meth:`samples_digest`)."""
        return (self.gauss, self.label_noise, self.weights)

    def parameters(self) -> dict:
        return {"model": "two-layer", **as_dict(self.model), **as_dict(self.options), **self.run_parameters}

    # kernels -------------------------------------------------------------------------
    def initial_kernels(self) -> dict:
        """Frozen network: R = 1 below the diagonal, C_z = 1, C_par = 1 (s = 1/D), C_b = 0."""
        T1 = self.T1
        R = np.tril(np.ones((T1, T1)), -1)
        K = {"R_z": R.copy(), "C_z": np.ones((T1, T1)), "R_par": R.copy(), "C_par": np.ones((T1, T1)),
             "R_b": R.copy(), "C_b": np.zeros((T1, T1))}
        if "mu_b" in self.kernel_names:
            K["mu_b"] = np.zeros((T1, 1))
        return K

    def _empty_kernels(self) -> dict:
        """Zero kernels of this problem's shapes ((T+1) x (T+1); mu_b: (T+1) x 1)."""
        T1 = self.T1
        return {k: np.zeros((T1, 1) if k == "mu_b" else (T1, T1)) for k in self.kernel_names}

    def _run(self, K, sweep, progress=None, checkpoint=None, start=None):
        """One pass over t = 0..T.  sweep=True fills row t of K (weight side) before the data
        side of row t uses it: the causal solution.  sweep=False keeps K fixed (map F).
        ``checkpoint(t, snapshot)`` is called after row t; ``snapshot()`` returns (kernels,
        observables, pass tree) of the pass so far.  ``start``: a pass tree to continue from
        (the pass then runs rows ``start["next_row"]``..T, bit-identical to an uninterrupted pass).
        Returns (state: SweepState, last_good_step, message)."""
        T1, o, mdl = self.T1, self.options, self.model
        B = self.u2.shape[0]
        st = SweepState.empty(B, T1, o.finite_size, odd_target=not mdl.even_target)
        rows = SiteRows(*(np.zeros((B, T1)) for _ in SiteRows._fields))
        cv = self._control_variate_state() if self.control_variate else None
        S = np.zeros((T1, T1)) if sweep else np.ascontiguousarray(K["C_par"] / o.dim)
        # everything else a pass carries from row to row (restored in place on a resume)
        scratch = {**{f"out_{name}": arr for name, arr in zip(SiteRows._fields, rows)}, "S": S,
                   **self._variant_scratch(K, sweep)}
        t0 = 0
        if start is not None:
            st, t0 = self._restore_pass(start, K, scratch, cv)
        avg = st.avg
        w, wu = self.weights, self.weights * self.u2
        constants = RowConstants(o.dt, mdl.lam, mdl.alpha, mdl.eps, 1.0 / o.dim, mdl.noise)
        sites = Sites(self.u2, self.label_noise, self.gauss, self.target, self.u, self.sel)
        sgd = mdl.batch_fraction < 1.0
        mu_b = K["mu_b"][:, 0] if "mu_b" in K else np.zeros(T1)
        decay = 1.0 - o.dt * mdl.weight_decay

        def snapshot(t):
            tree = {"next_row": t + 1, "samples_digest": self.samples_digest(), "kernels": dict(K),
                    "state": st.to_tree(), "scratch": scratch, "cv": cv or {}}
            return K, self._partial_observables(K, st, t), tree

        for t in range(t0, T1):
            if sweep:
                self._weight_side_row(t, avg, K, st.phi)
                if st.u_ell is not None and t > 0:
                    # mu_b(t+1) = (1 - h omega) mu_b(t) + h E[u ell_b(t)]: the teacher coordinate of the readout
                    # mean moves by O(sqrt(D)) (its own O(1) fluctuation is O(D^-1/2) in mu_b)
                    mu_b[t] = decay * mu_b[t - 1] + o.dt * st.u_ell[t - 1]
                S[t, : t + 1] = K["C_par"][t, : t + 1] / o.dim
                S[: t + 1, t] = S[t, : t + 1]
            self._before_data_side(t, K, st, scratch, sweep)
            n = t + 1
            # causal Cholesky row t of C_b; a residual variance below cholesky_cut * max variance is cut
            cholesky_extend(st.chol[:n, :n], K["C_b"][:n, :n], t,
                            o.cholesky_cut * max(float(np.max(np.diag(K["C_b"])[:n])), 0.0))
            self._data_side(t, constants, sites, RowKernels(K["R_z"], K["C_z"], S, K["R_b"], mu_b),
                            SiteState(st.chol, st.Gam, st.dDelta, st.dEll, st.m, st.Delta, st.ell), rows, st, K,
                            scratch)
            with np.errstate(all="ignore"):  # a diverging site is detected just below, not warned about
                st.trace_drive[t] = w @ (st.Delta[:, t] * rows.V[:, t] * (self.sel[:, t] if sgd else 1.0))
                # E[sigma Delta V(t,t)], trace_sum_rule
                avg["Rhat_z"][t, :n] = w @ rows.Rz[:, :n]
                avg["Rhat_par"][t, :n] = wu @ self._spike_response_rows(rows, scratch)[:, :n]
                avg["Rhat_b"][t, :n] = w @ rows.Rb[:, :n]
                if mdl.weight_decay > 0.0:  # theta(t+1) = (1 - h omega) theta(t) + ...: -omega on the diagonal
                    for name in ("Rhat_z", "Rhat_par", "Rhat_b"):
                        avg[name][t, t] -= mdl.weight_decay
                if st.u_ell is not None:  # E[sigma u ell_b(t)]: the teacher coordinate's drive (selected kicks)
                    st.u_ell[t] = (w * self.u) @ (st.ell[:, t] * self.sel[:, t] if sgd else st.ell[:, t])
                self._variant_averages(t, st, K, scratch)
                corr = self._control_variate_row(t, st, cv, rows.V, rows.Vperp) if cv is not None else {}
                for name, r in (("N_z", rows.Nz), ("N_par", rows.Npar), ("N_b", rows.Nb)):
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

    # the steps of a row that a variant extends ------------------------------------------
    def _variant_scratch(self, K, sweep) -> dict:
        """A variant's own arrays carried from row to row of a pass (part of its checkpoint)."""
        return {}

    def _before_data_side(self, t, K, st, scratch, sweep) -> None:
        """A variant's work on row t after the weight side and before the data side."""

    def _data_side(self, t, constants, sites, kernels, state, rows, st, K, scratch) -> None:
        """The data-side row step of every site (:func:`dmft.two_layer.data_side._data_side_row`)."""
        _data_side_row(t, constants, sites, kernels, state, rows)

    def _spike_response_rows(self, rows, scratch):
        """Per-site rows whose u^2-weighted mean is Rhat_par (the spike's response): Rhat_z's at D -> inf."""
        return rows.Rz

    def _variant_averages(self, t, st, K, scratch) -> None:
        """A variant's own data-side averages at row t (after Rhat_z, Rhat_par and Rhat_b)."""

    # checkpoints of a pass -------------------------------------------------------------
    def samples_digest(self) -> str:
        """BLAKE2b of every random draw of this problem (the same seed must give the same samples
        for a checkpointed pass to be continued)."""
        import hashlib

        h = hashlib.blake2b(digest_size=16)
        for arr in self._sample_arrays():
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
        T1 = self.T1
        return {"P": np.zeros((self.n_nodes, T1, T1)), "Q": np.zeros((self.n_nodes, T1, T1))}

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
        mdl = self.model
        n = t + 1
        L = st.chol[:n, :n]
        kappa2 = mdl.kappa ** 2
        corr = {"N_b": np.zeros(n), "N_z": np.zeros(n), "N_par": np.zeros(n)}
        for node in range(self.n_nodes):
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
                f"dt = {self.options.dt} is unstable there; lower --dt (or --u-max){self.divergence_hint}")

    # the two methods -----------------------------------------------------------------
    def sweep(self, progress=None, checkpoint=None, start=None):
        """Causal one-pass solution.  Returns (kernels, message); on divergence the message
        says where, kernel rows after the last good step are NaN, and the rows before are kept.
        A row is good when every site's residual and the train loss are finite and below
        :data:`dmft.params.DIVERGENCE_BOUND`.  ``checkpoint(t, snapshot)`` after each row and
        ``start`` (a stored pass to continue): see :meth:`_run` and :func:`dmft.solvers.causal.sweep`."""
        K = self._empty_kernels()
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
        if st.u_ell is not None:
            decay = 1.0 - h * self.model.weight_decay
            for t in range(1, T1):
                new["mu_b"][t, 0] = decay * new["mu_b"][t - 1, 0] + h * st.u_ell[t - 1]
        propagate_all(avg["Rhat_z"], avg["N_z"], h, 1.0, np.zeros(T1), new["R_z"], new["C_z"])
        propagate_all(avg["Rhat_par"], avg["N_par"], h, 1.0, np.zeros(T1), new["R_par"], new["C_par"])
        propagate_all(avg["Rhat_b"], avg["N_b"], h, 0.0, np.zeros(T1), new["R_b"], new["C_b"])
        self._variant_update(avg, new)
        return new

    def _variant_update(self, avg, new) -> None:
        """A variant's own kernels in the map F, from the pass's averages ``avg`` into ``new``."""

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
        mu = K["mu_b"][:, 0].copy() if "mu_b" in K else np.zeros(self.T1)
        with np.errstate(all="ignore"):
            train = self._train_loss(Delta)
            test = population_test_loss(mdl.alpha, mdl.eps, o.dim, Cz, s, Cb, mu, mdl.target)
            mean_norm = Cb + mu * mu
        return {"tau": self.tau.copy(), "train_loss": train, "test_loss": test, "spike": s, "bulk": Cz,
                "mean_norm": mean_norm, "mean_overlap": mu}

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
        data = self.model.kappa * st.trace_drive.copy()
        if self.model.weight_decay > 0.0:  # the decay's own drift, -omega tr(A A^T)/D
            data = data - self.model.weight_decay * (np.diag(K["C_z"]) + np.diag(K["C_par"]) / D)
        return {"tau": self.tau.copy(), "weight_side": weight, "data_side": data}

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


def register_variant(setting: str):
    """Class decorator: ``TwoLayerProblem(model, options)`` builds the decorated subclass when the
    boolean setting ``setting`` of ``options`` is on (a variant of the DMFT is a module plus this line)."""

    def register(cls):
        TwoLayerProblem.variants[setting] = cls
        return cls

    return register
