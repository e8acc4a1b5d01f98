"""Helpers for tests, the demo and benchmarks: run the real operator as a separate process."""
