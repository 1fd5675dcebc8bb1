"""Tracklet datasets registered in the host's ``DATASET_REGISTRY``."""
