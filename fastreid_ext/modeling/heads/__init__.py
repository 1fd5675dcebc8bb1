"""Heads shared by the meta-architectures."""
from .bnneck import BNNeckClassifier, read_old_bnneck_keys

__all__ = ["BNNeckClassifier", "read_old_bnneck_keys"]
