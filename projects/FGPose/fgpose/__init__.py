"""FGPose (Yin, Wu, Zheng, "Fine-Grained Person Re-identification", IJCV 2020): global
appearance, motion (OFF), motion-attentive and joint-specific local dynamic pose streams.

Importing this package registers ``FGPose`` (host ``META_ARCH_REGISTRY``), the CPU backbone
``build_fgpose_tiny_backbone`` (host ``BACKBONE_REGISTRY``) and ``MARSPose`` (host
``DATASET_REGISTRY``); :func:`add_fgpose_config` adds ``MODEL.FGPOSE``. The FGPR benchmark
itself (``FGPR``, ``SyntheticFGPR``, the ``fgpr`` evaluation protocol) lives in the core.
"""
import fastreid_ext  # noqa: F401  (host compat shims first)

from . import backbone, datasets  # noqa: F401  (registrations)
from .attention import ConvLSTMCell, MotionAttention, apply_masks, refine_masks
from .config import STREAMS, add_fgpose_config
from .joint_stream import JointSpecificStream, PartCNN
from .joints import PAPER_JOINTS, PARTS, crop_boxes, paper16_from_coco, part_boxes, part_images
from .meta_arch import FGPose, backbone_levels
from .motion import MotionStream, OFFUnit, sobel, temporal_difference

__all__ = [
    "add_fgpose_config", "STREAMS", "FGPose", "backbone_levels", "MotionStream", "OFFUnit", "sobel",
    "temporal_difference", "MotionAttention", "ConvLSTMCell", "refine_masks", "apply_masks",
    "JointSpecificStream", "PartCNN", "PAPER_JOINTS", "PARTS", "paper16_from_coco", "part_boxes",
    "crop_boxes", "part_images",
]
