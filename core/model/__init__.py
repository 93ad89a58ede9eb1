"""The model seam: the `Model` protocol, Claude, the slash-command model, the context and the prompts."""
