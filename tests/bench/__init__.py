"""Tests of the benchmarks (frugalvision.bench)."""
