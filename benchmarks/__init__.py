"""Benchmarks: each module runs with ``python -m benchmarks.<name>`` and writes ``results/<name>.json``."""
