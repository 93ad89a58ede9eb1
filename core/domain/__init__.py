"""The domain: events, the pure reducer, errors, ids and the ports; it imports nothing else of core."""
