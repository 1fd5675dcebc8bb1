"""Deployment: features files, feature extraction, persistent gallery indexes, ONNX export.

Tools: ``tools/extract_features.py``, ``tools/build_index.py``, ``tools/search.py``,
``tools/export_onnx.py``.
"""
from .extractor import ExtractionResult, FeatureExtractor
from .features_file import (
    ConfigHashMismatch,
    FeaturesFile,
    config_hash,
    load_features,
    save_features,
)
from .gallery_index import GalleryIndex, SearchResult
from .inputs import InputItem, collect_inputs
from .sharded_index import ShardedGallery, shard_of

__all__ = [
    "ConfigHashMismatch", "FeaturesFile", "config_hash", "load_features", "save_features",
    "ExtractionResult", "FeatureExtractor", "GalleryIndex", "SearchResult", "InputItem", "collect_inputs",
    "ShardedGallery", "shard_of",
]
