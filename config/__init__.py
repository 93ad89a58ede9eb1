"""Settings (from the environment) and the tool and prompt configuration files."""

from config.settings import CONFIG_DIR, PROJECT_DIR, Settings

__all__ = ["CONFIG_DIR", "PROJECT_DIR", "Settings"]
