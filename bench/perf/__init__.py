"""Performance: throughput, memory, overheads, peers and the GPU. ``run_all.py`` runs them (``make bench``)."""
