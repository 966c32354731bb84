"""Unsupervised domain adaptation: a trained model to unlabelled target cameras.

:mod:`~kreid.adaptation.cluster` turns embeddings into pseudo-identities
(k-reciprocal Jaccard distance, DBSCAN, track constraints; NumPy, SciPy and
scikit-learn only); :mod:`~kreid.adaptation.rounds` runs the rounds of embed,
cluster and train, each an ordinary resumable kreid run (``bin/adapt.py``).
"""
