"""Video / tracklet data: datasets (registered on import), clip sampling, transforms, loaders."""
from . import datasets  # noqa: F401  (registers the datasets)
