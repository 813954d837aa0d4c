"""Training: losses, metrics (pure pieces) and the loop."""
