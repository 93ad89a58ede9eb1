"""The default system prompts, one Markdown file per agent (`<agent>.md`), shipped as package data.

Found with importlib.resources (config/resources.py); BOT_PROMPTS_DIR points at an edited copy
(`bot init` writes one).
"""
