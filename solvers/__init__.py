"""Numerical machinery shared by every DMFT model: time grids, Numba kernels for causal
(Volterra) integrals and Gaussian-process propagation, the damped / accelerated fixed-point
driver with checkpoint-restart, and the result object.  No model equations live here."""
