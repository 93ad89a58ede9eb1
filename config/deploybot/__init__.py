"""DeployBot's sample tools, which the default config/tools.toml runs: `deployctl` (a simulated
deployment system) and `healthcheck` (its health endpoint).

They are programs, run by the command executor as `{python} -I -m config.deploybot.<name>`, never
imported by the bot: a module path works the same from a checkout and from an installed wheel.
"""
