"""Observability: metrics, log context, traces, and the failpoints that drills and fault tests use."""
