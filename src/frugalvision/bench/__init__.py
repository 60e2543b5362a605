"""Benchmarks: speed of frugalvision's networks and kernels against the baselines a user would pick."""
