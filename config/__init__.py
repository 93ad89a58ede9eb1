"""Settings (from the environment) and the shipped configuration: tools, agents, hooks, schedules.

Nothing is imported here: `python -m config.deploybot.deployctl` (a tool the shipped config runs)
must not pay for pydantic. Import from the modules: `from config.settings import Settings`.
"""

__all__: list[str] = []
