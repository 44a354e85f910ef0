"""Benchmarks of selfsup: pretraining throughput (`bench.throughput`) and peak memory (`bench.peak_memory`).

Nothing here is imported by the pipeline; see docs/benchmarks.md for the figures and how they were made.
"""
