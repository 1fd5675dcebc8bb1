"""FGReID meta-architecture (registered in the host's ``META_ARCH_REGISTRY`` on import)."""
from .fgreid import FGReID
from .mars_init import extract_backbone_state, load_mars_backbone

__all__ = ["FGReID", "extract_backbone_state", "load_mars_backbone"]
