"""The finite-size two-layer DMFT (``finite_size=True``, docs/finite-size.md) as a variant of
:class:`dmft.two_layer.problem.TwoLayerProblem`: its own samples, kernels (R_q, C_q), row steps and
readouts.  ``TwoLayerProblem(model, options)`` builds it when ``options.finite_size`` is on."""
from __future__ import annotations

import math

import numpy as np

from dmft.solvers.gaussian import propagate_all, propagate_row
from dmft.solvers.volterra import cholesky_extend

from .finite_size import (FiniteSizeKernels, FiniteSizeRows, FiniteSizeSites, FiniteSizeState, _bump_field_row,
                          _cross_weights_row, _finite_size_row, _own_bump_diag)
from .problem import TwoLayerProblem, register_variant
from .readouts import bump_test_correction, cross_test_correction, reaction_residual
from .settings import _BUMP_PARTNERS, CROSS_KERNEL_NAMES
from .validity import trusted_region


@register_variant("finite_size")
class FiniteSizeProblem(TwoLayerProblem):
    """The two-layer DMFT with the finite-D terms of docs/finite-size.md: the spike-bulk cross
    direction q (kernels R_q, C_q), the teacher coordinate's own memory, the other memorised points'
    bump field, each point's bulk norm, and the other points' reaction to each point's own bump."""

    extra_kernel_names = CROSS_KERNEL_NAMES
    divergence_hint = ("; with --finite-size the finite-size terms can grow faster than the D -> inf ones outside "
                       f"the region of the validity map (docs/finite-size.md, section 7: {trusted_region()}): also "
                       "try a larger --dim, or without --finite-size")

    # samples -------------------------------------------------------------------------
    def _draw_variant_samples(self, rng, weights):
        o = self.options
        half, S = o.samples // 2, o.samples
        per = S + 1
        T1 = self.T1
        gq = rng.standard_normal((o.nodes, half, T1))
        gauss_q = np.zeros((o.nodes, per, T1))
        gauss_q[:, :half], gauss_q[:, half:S] = gq, -gq
        self.gauss_q = np.ascontiguousarray(gauss_q.reshape(-1, T1))
        # bump field: each sampled site sees K other training points drawn from the sites, with
        # Gaussian weights of the variance of (x_mu.x_nu)^2 - 1/D, 2/D^2, scaled so that K of the
        # P points stand for all of them; antithetic like xi_b (the pair's linear parts cancel).
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
        # back into its covariance, a self-feedback the networks do not have.  Those partners get zero
        # weight, and the site's remaining weights are rescaled to keep the variance of zeta.
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

    def _sample_arrays(self) -> tuple:
        return super()._sample_arrays() + (self.gauss_q, self.partners, self.omegas, self.bulk_norm)

    def initial_kernels(self) -> dict:
        K = super().initial_kernels()
        K.update({"R_q": np.tril(np.ones((self.T1, self.T1)), -1), "C_q": np.zeros((self.T1, self.T1))})
        return K

    # the row steps -------------------------------------------------------------------
    def _variant_scratch(self, K, sweep) -> dict:
        T1, B = self.T1, self.u2.shape[0]
        # the spike path is rank one to ~1e-3 (z_par(t) = phi(t) Z): phi = sqrt(s(t,t)), causal
        phi_hat = np.zeros(T1) if sweep else np.sqrt(np.maximum(np.diag(K["C_par"]), 0.0) / self.options.dim)
        return {"out_Rq": np.zeros((B, T1)), "out_pull": np.zeros(B), "out_Rpar": np.zeros((B, T1)),
                "phi_hat": phi_hat, "C_q": K["C_q"]}

    def _before_data_side(self, t, K, st, scratch, sweep) -> None:
        o, mdl = self.options, self.model
        phi_hat, C_q = scratch["phi_hat"], scratch["C_q"]
        if sweep:
            phi_hat[t] = math.sqrt(max(K["C_par"][t, t], 0.0) / o.dim)
            # only the response R_q is used: the covariance of q comes from the sites (C_q below)
            propagate_row(t, st.avg["Rhat_q"], st.zero, o.dt, 0.0, st.Phi_q, K["R_q"], st.C_scratch)
        # the cross direction's weights at row t need the sites' rows < t only
        _cross_weights_row(t, o.dt, mdl.lam, mdl.kappa, 1.0 / o.dim, self.u2, st.Gam, K["C_z"], K["R_z"],
                           K["R_q"], K["R_par"], st.Delta, st.p_spk, st.c_spk, phi_hat, st.Vfull, st.Wq, C_q)
        row = mdl.kappa ** 2 * mdl.lam * ((self.weights * st.Wq[:, t]) @ st.Wq[:, : t + 1])
        st.avg["C_q"][t, : t + 1] = row
        st.avg["C_q"][: t + 1, t] = row
        if sweep:
            C_q[t, : t + 1] = row
            C_q[: t + 1, t] = row
        n = t + 1
        cholesky_extend(st.chol_q[:n, :n], C_q[:n, :n], t, o.cholesky_cut * max(float(np.max(np.diag(C_q)[:n])), 0.0))

    def _data_side(self, t, constants, sites, kernels, state, rows, st, K, scratch) -> None:
        phi_hat, C_q, S = scratch["phi_hat"], scratch["C_q"], kernels.S
        _bump_field_row(t, K["C_z"], S, C_q, self.u2, st.chi, phi_hat, st.Vfull, st.Czs, self.bulk_norm,
                        self.partners, self.omegas, st.bump)
        _finite_size_row(t, constants, sites, kernels, state, rows, FiniteSizeKernels(phi_hat, C_q, K["R_par"]),
                         FiniteSizeSites(self.gauss_q, self.bulk_norm),
                         FiniteSizeState(st.chol_q, st.chi, st.p_spk, st.c_spk, st.Gamc, st.dDv, st.dEv, st.Vfull,
                                         st.Czs, st.react),
                         FiniteSizeRows(scratch["out_Rq"], scratch["out_pull"], scratch["out_Rpar"]))
        # E[b(t,t)^2] over the sites, for the test loss (bump_test_correction), and each site's reaction
        b_tt = np.empty(self.u2.shape[0])
        _own_bump_diag(t, K["C_z"], S, C_q, self.u2, st.chi, phi_hat, st.Vfull, st.Czs, self.bulk_norm, b_tt)
        with np.errstate(all="ignore"):
            st.bump2[t] = self.weights @ b_tt**2
            st.react[:, t] = self._reaction(b_tt)

    def _reaction(self, bump):
        """The other points' reaction residual to each site's own bump (:func:`reaction_residual`)."""
        return reaction_residual(self.model.alpha, self.model.eps, self.model.ratio, self.options.dim, bump)

    def _spike_response_rows(self, rows, scratch):
        return scratch["out_Rpar"]

    def _variant_averages(self, t, st, K, scratch) -> None:
        n, w, avg, kappa = t + 1, self.weights, st.avg, self.model.kappa
        avg["Rhat_z"][t, t] += self._site_covariance_rate(t, st, K["C_z"])
        avg["Rhat_q"][t, :n] = w @ scratch["out_Rq"][:, :n]
        if self.model.weight_decay > 0.0:  # the cross direction decays like every weight-side coordinate
            avg["Rhat_q"][t, t] -= self.model.weight_decay
        phi_hat = scratch["phi_hat"]
        if phi_hat[t] > 0.0:  # the coherent pull acts as an extra growth rate of z_par = sqrt(D) phi Z
            pull = float(w @ scratch["out_pull"])
            if self.dataset_deviation is not None:
                # a training set's own pull: the sum over its P points of u Delta c, whose finite-P
                # part the exact chi-average drops (docs/finite-size.md, section 4)
                pull += float(self.dataset_deviation @ (self.u * st.Delta[:, t] * st.c_spk[:, t] - scratch["out_pull"]))
            avg["Rhat_par"][t, t] += kappa * pull / phi_hat[t]

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

    def _variant_update(self, avg, new) -> None:
        T1, h = self.T1, self.options.dt
        new["C_q"][:] = avg["C_q"]
        propagate_all(avg["Rhat_q"], np.zeros((T1, T1)), h, 0.0, np.zeros(T1), new["R_q"], np.zeros((T1, T1)))

    # readouts ------------------------------------------------------------------------
    def observables_from(self, K, Delta) -> dict:
        out = super().observables_from(K, Delta)
        mdl, o = self.model, self.options
        s, Cq = out["spike"], np.diag(K["C_q"]).copy()
        out["test_loss"] = out["test_loss"] + cross_test_correction(mdl.alpha, mdl.eps, s, Cq)
        if self.last_pass is not None and self.last_pass.bump2 is not None:
            out["test_loss"] = out["test_loss"] + bump_test_correction(
                mdl.alpha, mdl.eps, mdl.ratio, o.dim, out["bulk"], self.last_pass.bump2)
        out["spike_bulk_cross"] = s * Cq
        return out
