"""The built-in demo: a procedural landmark data set and a short train -> evaluate -> plot run.

``make_demo_dataset(folder)`` writes cartoon-face JPEGs with eight named landmarks (some occluded,
hence missing) and a VIA 2 project; ``run_demo(out_dir)`` trains a small ResNet on it from disk
and prints the test pixel error next to the mean-shape baseline. ``cnnkit demo`` and
``make demo`` call ``run_demo``. ``make_demo_dataset(folder, small_subject=True)`` (or
``cnnkit demo --small-subject``) writes the small-subject set: small faces in 1280x960 frames.

Example:
    >>> from cnnkit.demo import run_demo
    >>> metrics = run_demo("runs/demo")  # doctest: +SKIP
"""

from __future__ import annotations

from cnnkit.demo.run import run_demo
from cnnkit.demo.synth import LANDMARKS, SmallSubject, is_demo_dataset, make_demo_dataset

__all__ = ["LANDMARKS", "SmallSubject", "is_demo_dataset", "make_demo_dataset", "run_demo"]
