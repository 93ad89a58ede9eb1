"""Redis: the store, the bus, keys and scripts, sweeps, schedule ticks, paging, rate limits. The only room of core that imports redis."""
