"""Benchmarks: the sequential loop, the in-process run and the Celery fan-out, side by side."""
