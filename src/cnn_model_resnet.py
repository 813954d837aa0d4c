"""Import shim under the seed library's module name ``cnn_model_resnet``: re-exports ``cnnkit.compat.seed_api``.

A notebook written for the seed keeps working with ``import cnn_model_resnet`` / ``from cnn_model_resnet import *``.
"""

from cnnkit.compat.seed_api import *  # noqa: F403 - the seed's names, exactly as seed_api lists them
from cnnkit.compat.seed_api import __all__  # noqa: F401
