"""The HTTP server: the REST API, webhooks, the web console, health, metrics and the perimeter."""
