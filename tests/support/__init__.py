"""Helpers shared by the tests (and the benchmarks): synthetic inputs with known answers."""
