"""Tracklet datasets registered in the host's ``DATASET_REGISTRY``."""
from .cuhk01 import CUHK01
from .fgpr import FGPR, SyntheticFGPR
from .ilidsvid import iLIDSVID
from .mars import MARS
from .prid2011 import PRID2011
from .synthetic import (
    SyntheticCUHK01,
    SyntheticILIDSVID,
    SyntheticMarket1501,
    SyntheticMARS,
    SyntheticPRID2011,
)
from .tracklet_dataset import TrackletDataset, datasets_root, require_layout

__all__ = [
    "TrackletDataset", "datasets_root", "require_layout",
    "MARS", "iLIDSVID", "PRID2011", "CUHK01", "FGPR", "SyntheticFGPR",
    "SyntheticMARS", "SyntheticILIDSVID", "SyntheticPRID2011", "SyntheticCUHK01", "SyntheticMarket1501",
]
