"""CPU (numba) kernels."""
