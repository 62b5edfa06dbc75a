"""sweep: find the best sequence of neural-network optimizations for tiny devices.

The optimization toolkit (tensorflow-model-optimization) only works with Keras 2,
so the legacy Keras switch must be set before TensorFlow is first imported,
whoever imports it first. Old module paths that users' configs may still name
(``_target_: sweep.data.ImageDataset``) keep resolving, with a warning
(:mod:`sweep.compat`).
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from sweep import compat

compat.install()

__version__ = "0.1.0"
