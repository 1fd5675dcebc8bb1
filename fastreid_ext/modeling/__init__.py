"""Losses, layers and meta-architectures of the plugin (registered on import)."""
from . import losses  # noqa: F401
from . import meta_arch  # noqa: F401
