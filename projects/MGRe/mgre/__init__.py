"""MGRe: multi-granularity features from multi-granularity body regions.

Importing this package registers ``MGRe`` (host ``META_ARCH_REGISTRY``) and the keypoint-aware
datasets (``Market1501Keypoints``, ... in the host ``DATASET_REGISTRY``);
:func:`add_mgre_config` adds ``MODEL.MGRE``.
"""
import fastreid_ext  # noqa: F401  (host compat shims first)

from . import datasets  # noqa: F401  (registers <Name>Keypoints, CUHK03Detected)
from .config import MGRE_MODES, add_mgre_config
from .embedding import ResidualBlock, StageEmbedding, gap_gmp, weighted_concat
from .location import LocationModule, boxes_from_keypoints, location_loss, location_loss_terms
from .meta_arch import MGRe, backbone_stages
from .regions import TABLE1_REGIONS, Region, prior_box_size, regions_of_stage, scaled_size
from .sampling import region_corners, region_theta, sample_region

__all__ = [
    "MGRE_MODES", "add_mgre_config", "ResidualBlock", "StageEmbedding", "gap_gmp", "weighted_concat",
    "LocationModule", "boxes_from_keypoints", "location_loss", "location_loss_terms", "MGRe",
    "backbone_stages", "TABLE1_REGIONS", "Region", "prior_box_size", "regions_of_stage", "scaled_size",
    "region_corners", "region_theta", "sample_region",
]
