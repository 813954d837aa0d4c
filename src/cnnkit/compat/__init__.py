"""Seed compatibility: the seed library's functions under their seed names (see ``seed_api``).

Nothing in the core imports this package. The top-level modules ``cnn_model_resnet`` and
``dl_utils`` re-export the same names, so ``from cnn_model_resnet import *`` works.
"""

from cnnkit.compat.seed_api import *  # noqa: F403 - the names seed_api.__all__ lists
from cnnkit.compat.seed_api import __all__  # noqa: F401
