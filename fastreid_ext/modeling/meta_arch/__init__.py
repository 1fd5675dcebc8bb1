"""Meta-architectures registered in the host's ``META_ARCH_REGISTRY``."""
