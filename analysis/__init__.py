"""Metric analysis: Prometheus queries per twin, verdicts and judges.

This package never imports `canary` (an import-linter contract in `make lint`).
"""
