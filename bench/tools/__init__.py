"""Developer tools for studying the measurement itself (not needed to benchmark a model)."""
