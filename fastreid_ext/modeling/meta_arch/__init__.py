"""Meta-architectures registered in the host's ``META_ARCH_REGISTRY`` and their base class."""
from .base import ReidMetaArch
from .video_baseline import VideoBaseline  # registers "VideoBaseline"

__all__ = ["ReidMetaArch", "VideoBaseline"]
