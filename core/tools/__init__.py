"""Tools: the registry of specs and policies, the executors, handoffs, redaction and preflight checks."""
