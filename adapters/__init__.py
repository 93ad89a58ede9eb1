"""One thin module per channel: channel payload -> Trigger, Outbound -> what the channel shows."""

from adapters.terminal import Terminal, render
from adapters.web import WebChannel

__all__ = ["Terminal", "WebChannel", "render"]
