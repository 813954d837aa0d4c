"""Using a trained model: predict on new images, evaluate against annotations."""
