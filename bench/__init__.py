"""Benchmarks against the local sandbox. Each prints a table of numbers."""
