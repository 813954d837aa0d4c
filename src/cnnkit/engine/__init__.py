"""What training, prediction and compat share: the step set-up, inference, device, metrics."""
