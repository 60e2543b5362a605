"""GPU (Triton) kernels."""
