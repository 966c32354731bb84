"""kreid: person and vehicle re-identification by deep metric learning.

Sub-packages: ``kreid.data`` (datasets, PK sampling, tf.data pipelines),
``kreid.models``, ``kreid.losses``, ``kreid.mining``, ``kreid.training`` and
``kreid.evaluation``. Import them explicitly; this top-level module stays light
so that ``import kreid.data.datasets`` does not pull in TensorFlow.
"""

__version__ = "0.1.0"

import importlib.util as _util

if _util.find_spec("tensorflow") is None:     # a check, not an import: this module stays light
    raise ImportError('kreid needs TensorFlow, which comes with an extra: pip install -e ".[cpu]" '
                      '(or ".[gpu]" for the CUDA build on Linux x86-64); make demo and make test '
                      "install the CPU build themselves (make install TF=gpu for the other)")
