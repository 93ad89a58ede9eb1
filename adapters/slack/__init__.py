"""The Slack channel (Bolt): inbound events and actions, Block Kit cards, the app manifest."""
