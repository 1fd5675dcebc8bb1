"""Meta-architectures registered in the host's ``META_ARCH_REGISTRY``."""
from .video_baseline import VideoBaseline  # noqa: F401  (registers "VideoBaseline")
