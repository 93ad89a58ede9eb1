"""The eval scenarios (`<agent>.toml`) and their recorded model answers (`recorded/`), shipped as
package data so `bot eval` runs offline from an installed wheel.

Found with importlib.resources (config/resources.py); BOT_EVALS_DIR points at an edited copy
(`bot init` writes one).
"""
