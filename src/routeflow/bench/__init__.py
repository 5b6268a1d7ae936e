"""Benchmarks that measure routeflow against the real thing (kernel, Open vSwitch)."""
