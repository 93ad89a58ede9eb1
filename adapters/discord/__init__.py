"""The Discord channel (discord.py): gateway messages, app commands, buttons, rendering."""
