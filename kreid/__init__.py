"""kreid: person and vehicle re-identification by deep metric learning.

Sub-packages: ``kreid.data`` (datasets, PK sampling, tf.data pipelines),
``kreid.models``, ``kreid.losses``, ``kreid.mining``, ``kreid.training`` and
``kreid.evaluation``. Import them explicitly; this top-level module stays light
so that ``import kreid.data.datasets`` does not pull in TensorFlow.
"""

__version__ = "0.1.0"
