"""Reading and writing files: self-describing model checkpoints, training state, atomic writes."""
