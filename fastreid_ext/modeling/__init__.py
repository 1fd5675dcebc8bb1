"""Losses, layers and meta-architectures of the plugin (registered on import)."""
from . import (
    losses,  # noqa: F401
    meta_arch,  # noqa: F401
)
