"""Embedding, distances, protocols, metrics, re-ranking and reports (NumPy; no TensorFlow here)."""

from kreid.evaluation.metrics import evaluate

__all__ = ["evaluate"]
