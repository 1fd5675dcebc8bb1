"""MG-RAFA: multi-granularity reference-aided attentive feature aggregation.

Importing this package registers ``MGRAFAHead`` (host ``REID_HEADS_REGISTRY``) and
``MGRAFANet`` (host ``META_ARCH_REGISTRY``); :func:`add_mgrafa_config` adds ``MODEL.MGRAFA``.
"""
import fastreid_ext  # noqa: F401  (host compat shims first)

from .aggregation import MultiGranularityAggregation
from .config import add_mgrafa_config
from .head import MGRAFAHead
from .meta_arch import MGRAFANet, eq7_losses

__all__ = ["MultiGranularityAggregation", "add_mgrafa_config", "MGRAFAHead", "MGRAFANet",
           "eq7_losses"]
