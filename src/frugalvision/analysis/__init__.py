"""Measuring models: operation and energy counting, benchmarks, figures."""
