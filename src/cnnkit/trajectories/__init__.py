"""Trajectories: smoothing and uncertainty of per-frame predictions (numpy and pandas only)."""
