import os

# One BLAS thread: the simulator's matmuls are faster single-threaded on a shared 2-core
# machine (2-thread OpenBLAS measured 2-25x slower under load); Numba kernels keep their threads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
