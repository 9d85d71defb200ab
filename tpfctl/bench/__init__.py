"""Benchmarks: cost per execution, throughput against a bare-loop ceiling, coordinator CPU, and
per-transition latency, measured on a stack this package starts and owns (``tpf bench``)."""
