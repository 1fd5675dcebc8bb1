"""Losses, temporal aggregations and meta-architectures of the plugin (registered on import)."""
from . import (
    aggregation,  # noqa: F401
    losses,  # noqa: F401
    meta_arch,  # noqa: F401
)
