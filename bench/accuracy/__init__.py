"""Accuracy: experiments that train and report errors in original pixels (docs/ACCURACY.md)."""
