"""Heads shared by the meta-architectures."""
from .bnneck import BNNeckClassifier

__all__ = ["BNNeckClassifier"]
