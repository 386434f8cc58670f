"""Closed-form learning curves of linear regression trained by gradient flow, through the
Marchenko–Pastur law.  The independent reference for the DMFT of :mod:`dmft.linear`.

Model (as in :class:`dmft.params.LinearModel`): x ~ N(0, I_D/D), y = beta.x + sigma xi,
beta ~ N(0, I_D), P = ratio D data, w(0) = 0, gradient flow on L = (1/P) sum_mu (y_mu - w.x_mu)^2
in time tau = t/D.  With lambda = D/P = 1/ratio and the sample covariance S = lambda X^T X
(mean eigenvalue 1), the error e = w - beta obeys

    de/dtau = -2 S e + 2 lambda sigma X^T xi,   e(0) = -beta,

so in the eigenbasis of S (eigenvalue s, eigenvector v):
e_v(tau) = -e^{-2 s tau} beta_v + (1 - e^{-2 s tau}) lambda sigma (X^T xi)_v / s.
Averaging over beta, xi ((beta_v)^2 -> 1, (X^T xi)_v^2 -> s / lambda) and D -> inf, with mu the
Marchenko–Pastur law of S (aspect ratio lambda, edges (1 -+ sqrt(lambda))^2, plus an atom of mass
1 - ratio at s = 0 when ratio < 1):

    test(tau)  = |w - beta|^2/D + sigma^2
               = int dmu(s) e^{-4 s tau} + lambda sigma^2 int_{s>0} dmu(s) (1 - e^{-2 s tau})^2 / s + sigma^2,
    train(tau) = (1/P) |y - X w|^2
               = int dmu(s) s e^{-4 s tau} + sigma^2 [1 - min(1, lambda) + lambda int_{s>0} dmu(s) e^{-4 s tau}].

The test loss INCLUDES the label noise of the test point (test = E_{x,xi}(y - w.x)^2); the
simulator and the DMFT use the same convention.  The weight response (the average diagonal of
e^{-2 S (tau - tau')}) is R_w(tau - tau') = int dmu(s) e^{-2 s (tau - tau')} (:func:`response`).
Checks: train(0) = test(0) = 1 + sigma^2; train(inf) = sigma^2 (1 - lambda) and
test(inf) = sigma^2 (1 + lambda/(1 - lambda)) for ratio > 1.

The continuous part is integrated with Gauss–Legendre nodes in theta, s = (1 + lambda) +
2 sqrt(lambda) cos(theta), where the density times ds is (2 sin^2 theta) / (pi s) dtheta, and
the integrands are analytic (also at ratio = 1, where s_- = 0): the error falls faster than any
power of the number of nodes, ~ 128 + 24 sqrt(4 tau_max / sqrt(ratio)) of them (relative accuracy
~ 1e-12 for any tau).
"""
from __future__ import annotations

import numpy as np
from scipy.special import roots_legendre

from .params import LinearModel

__all__ = ["losses", "filtered_losses", "response", "spectrum_nodes"]


def spectrum_nodes(ratio: float, tau_max: float = 0.0, n: int | None = None):
    """Nodes and weights (s_k, m_k) of the continuous part of the MP law of S = lambda X^T X, and the
    atom mass at 0: sum_k m_k f(s_k) ~= int_{s>0} f dmu for f analytic of bandwidth ~ 4 s tau_max."""
    lam = 1.0 / ratio
    r = 2.0 * np.sqrt(lam)
    if n is None:
        # near the lower edge s - s_- ~ sqrt(lambda) (pi - theta)^2: the integrands of width 1/sqrt(tau)
        # there are analytic in a strip of that width, so n ~ sqrt(tau) nodes suffice (checked
        # against n = 40000 for ratio 0.5..4, tau <= 1e4: differences at round-off, <= 1e-11 relative)
        n = int(128 + 24 * np.sqrt(r * max(tau_max, 0.0)))
    x, wx = roots_legendre(n)
    theta = 0.5 * np.pi * (x + 1.0)
    w_theta = 0.5 * np.pi * wx
    # s = (1 + lam) + r cos(theta), written without cancellation near the lower edge s_- -> 0
    s = (1.0 - np.sqrt(lam)) ** 2 + 2.0 * r * np.cos(0.5 * theta) ** 2
    # rho(s) ds = sqrt((s+ - s)(s - s-)) / (2 pi lam s) ds = r^2 sin^2(theta) / (2 pi lam s) dtheta
    sin2 = np.sin(theta) ** 2
    m = w_theta * r * r * sin2 / (2.0 * np.pi * lam * s)
    atom = max(0.0, 1.0 - ratio)
    return s, m, atom


def losses(ratio: float, noise: float, tau) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) losses of gradient-flow linear regression at times ``tau`` (D -> inf).

    Test loss includes the label noise: test = |w - beta|^2/D + noise^2.  See the module docstring.
    """
    model = LinearModel(ratio=ratio, noise=noise)
    lam = 1.0 / model.ratio
    sig2 = model.noise**2
    tau = np.asarray(tau, dtype=np.float64)
    shape = tau.shape
    tau = tau.ravel()
    s, m, atom = spectrum_nodes(model.ratio, float(np.max(tau, initial=0.0)))
    train = np.empty(tau.size)
    test = np.empty(tau.size)
    for lo in range(0, tau.size, 256):  # chunks keep the (times x nodes) block small
        tt = tau[lo : lo + 256, None]
        e4 = np.exp(-4.0 * s * tt)
        one_minus = -np.expm1(-2.0 * s * tt)
        bulk_e4 = e4 @ m
        test[lo : lo + 256] = atom + bulk_e4 + lam * sig2 * ((one_minus**2 / s) @ m) + sig2
        train[lo : lo + 256] = (e4 * s) @ m + sig2 * (1.0 - min(1.0, lam) + lam * bulk_e4)
    return train.reshape(shape), test.reshape(shape)


def filtered_losses(ratio: float, signal: float, noise: float, tau, dt: float | None = None,
                    weight_decay: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(train, error) of linear regression y = signal beta.x + noise xi from w(0) = 0, by gradient flow (``dt``
    None) or gradient descent with steps ``dt`` in tau, with weight decay omega (dw/dtau = -omega w - grad).

    Each eigenmode s of S learns the filtered fraction E(s) = 2 s / (2 s + omega) (1 - d(s)) of its least-squares
    solution, d = e^{-(2 s + omega) tau} or (1 - dt (2 s + omega))^(tau/dt), so that

        error = |w - signal beta|^2 / D = signal^2 int dmu (1 - E)^2 + lambda noise^2 int_{s>0} dmu E^2 / s,
        train = signal^2 int dmu s (1 - E)^2 + noise^2 [1 - min(1, lambda) + lambda int_{s>0} dmu (1 - E)^2]

    (the atom at s = 0 has E = 0).  At omega = 0 and dt = None these are :func:`losses` (error = test - noise^2)."""
    lam = 1.0 / LinearModel(ratio=ratio).ratio
    tau = np.asarray(tau, dtype=np.float64)
    shape = tau.shape
    tau = tau.ravel()
    s, m, atom = spectrum_nodes(ratio, float(np.max(tau, initial=0.0)))
    rate = 2.0 * s + weight_decay
    tt = tau[:, None]
    if dt is None:
        left = np.exp(-rate * tt)
    else:
        left = (1.0 - dt * rate) ** np.rint(tt / dt)
    E = 2.0 * s / rate * (1.0 - left)
    bias = (1.0 - E) ** 2
    error = signal**2 * (atom + bias @ m) + lam * noise**2 * ((E * E / s) @ m)
    train = signal**2 * ((bias * s) @ m) + noise**2 * (1.0 - min(1.0, lam) + lam * (bias @ m))
    return train.reshape(shape), error.reshape(shape)


def response(ratio: float, tau) -> np.ndarray:
    """Average response of a weight to a kick a time tau earlier: R_w(tau) = int dmu(s) e^{-2 s tau}
    (the diagonal of e^{-2 S tau}, atom at 0 included).  The DMFT's R_w(t, t') equals R_w(t - t')."""
    tau = np.asarray(tau, dtype=np.float64)
    s, m, atom = spectrum_nodes(LinearModel(ratio=ratio).ratio, float(np.max(tau, initial=0.0)))
    return (atom + np.exp(-2.0 * s * tau.ravel()[:, None]) @ m).reshape(tau.shape)
