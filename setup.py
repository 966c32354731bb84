"""Thin setup.py: metadata lives in pyproject.toml.

The root install also installs the TensorFlow-free edge runtime ``kreid_edge``
from ``export/kreid_edge`` (installable on its own with ``pip install ./export``).
"""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["kreid", "kreid.*"]) + ["kreid_edge"],
    package_dir={"kreid_edge": "export/kreid_edge"},
)
