"""One thin module per channel: channel payload -> Trigger, Outbound -> what the channel shows."""

from adapters.cli import Terminal, render

__all__ = ["Terminal", "render"]
