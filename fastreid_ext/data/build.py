"""Train / test loaders: ``build_reid_train_loader(cfg)`` / ``build_reid_test_loader(cfg, name)``
pick images or clips from the data; ``build_video_*`` always make clips.

- Image datasets (every item one frame: the host's Market1501, DukeMTMC, MSMT17, ..., and the
  plugin's 1-frame tracklets) give ``(B, C, H, W)`` batches through the host's transforms
  (:mod:`.image_dataset`), whatever ``INPUT.VIDEO.*`` / ``TEST.VIDEO.*`` say.
- Video datasets give ``(B, T, C, H, W)`` clips (:mod:`.video_dataset`); a train set mixing
  tracklets and single images (``DATASETS.NAMES`` of both kinds) is loaded as clips too.

Plain ``torch.utils.data.DataLoader`` (never the host's CUDA-only ``DataLoaderX``,
``fastreid/data/data_utils.py:151``), ``pin_memory`` only when CUDA is available, persistent
workers when there are workers, and the collate functions making the batch dict of
``docs/architecture.md``. The loader functions are ``@configurable`` (host style): call them
with a cfg, or with explicit datasets / samplers. ``DATASETS.COMBINEALL`` is honoured like the
host (``fastreid/engine/defaults.py:352``).
"""
from __future__ import annotations

import logging
from typing import Optional

import cv2
import torch
from torch.utils.data import BatchSampler, DataLoader

from fastreid.config import configurable
from fastreid.data import samplers as host_samplers
from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.utils import comm

from .clip_sampler import build_train_clip_sampler
from .datasets.tracklet_dataset import datasets_root
from .image_dataset import (
    ImageTestDataset,
    ImageTrainDataset,
    build_image_transforms,
    collate_image_batch,
    is_image_items,
    keypoint_train_transform,
)
from .items import extras_of, host_sampler_items
from .keypoint_check import check_train_keypoints
from .samplers import IdentityBalancedSampler, InferenceSampler
from .transforms import build_clip_transforms
from .video_dataset import VideoTestDataset, VideoTrainDataset, collate_video_batch

logger = logging.getLogger(__name__)

# DATALOADER.SAMPLER_TRAIN -> sampler. "NaiveIdentitySampler" (the host's P x K sampler name,
# used by its bag-of-tricks configs) maps to the distributed-aware P x K sampler of .samplers;
# the host's other samplers are used as they are (they read the pid / camid of the items).
_TRAIN_SAMPLERS = ("TrainingSampler", "NaiveIdentitySampler", "IdentityBalancedSampler",
                   "BalancedIdentitySampler", "SetReWeightSampler", "ImbalancedDatasetSampler")


def get_dataset(cfg, name: str, combineall: bool = False):
    """``DATASET_REGISTRY.get(name)(root=..., split=..., protocol=...[, combineall=True])``;
    unknown names raise ``KeyError`` listing the registered datasets."""
    known = sorted(DATASET_REGISTRY._obj_map)
    if name not in known:
        raise KeyError(f"unknown dataset {name!r}; registered datasets: {known}")
    extra = {"combineall": True} if combineall else {}
    return DATASET_REGISTRY.get(name)(
        root=datasets_root(cfg), split=cfg.DATASETS.SPLIT, protocol=cfg.DATASETS.PROTOCOL, **extra
    )


def build_train_sampler(cfg, train_set, seed: Optional[int] = None):
    """The index sampler named by ``cfg.DATALOADER.SAMPLER_TRAIN``; unknown names raise."""
    name = cfg.DATALOADER.SAMPLER_TRAIN
    if name == "TrainingSampler":
        return host_samplers.TrainingSampler(len(train_set), seed=seed)
    if name in ("NaiveIdentitySampler", "IdentityBalancedSampler"):
        return IdentityBalancedSampler(
            train_set.items, cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_INSTANCE, seed=seed
        )
    mini_batch = cfg.SOLVER.IMS_PER_BATCH // comm.get_world_size()
    items = host_sampler_items(train_set.items)  # (paths, pid, camid): what the host's samplers unpack
    if name == "BalancedIdentitySampler":
        return host_samplers.BalancedIdentitySampler(items, mini_batch, cfg.DATALOADER.NUM_INSTANCE, seed=seed)
    if name == "SetReWeightSampler":
        return host_samplers.SetReWeightSampler(items, mini_batch, cfg.DATALOADER.NUM_INSTANCE,
                                                cfg.DATALOADER.SET_WEIGHT, seed=seed)
    if name == "ImbalancedDatasetSampler":
        return host_samplers.ImbalancedDatasetSampler(items, seed=seed)
    raise KeyError(f"unknown DATALOADER.SAMPLER_TRAIN {name!r}; known: {list(_TRAIN_SAMPLERS)}")


def load_train_items(cfg) -> list:
    """The train items of every dataset in ``cfg.DATASETS.NAMES`` (``DATASETS.COMBINEALL``
    honoured), with the host's summary table on the main process."""
    items = []
    for name in cfg.DATASETS.NAMES:
        data = get_dataset(cfg, name, combineall=cfg.DATASETS.COMBINEALL)
        if comm.is_main_process():
            data.show_train()
        items.extend(data.train)
    return items


def _image_train_set(cfg, items) -> ImageTrainDataset:
    with_kp = [it for it in items if extras_of(it).get("keypoints")]
    kp_transform = None
    if with_kp:
        logger.info(f"{len(with_kp)} of {len(items)} train images carry keypoints: those use the keypoint-aware "
                    f"transform (INPUT.SIZE_TRAIN, PADDING, FLIP, REA), the others the host's build_transforms")
        kp_transform = keypoint_train_transform(cfg)
    return ImageTrainDataset(items, build_image_transforms(cfg, is_train=True), kp_transform, relabel=True)


def _worker_init(worker_id: int) -> None:
    """One OpenCV thread per DataLoader worker (the workers already run in parallel)."""
    cv2.setNumThreads(1)


def _loader_kwargs(num_workers: int, collate_fn=collate_video_batch) -> dict:
    return dict(
        num_workers=num_workers,
        collate_fn=collate_fn,
        worker_init_fn=_worker_init if num_workers > 0 else None,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
    )


def _video_train_set(cfg, items) -> VideoTrainDataset:
    return VideoTrainDataset(
        items,
        build_clip_transforms(cfg, is_train=True),
        build_train_clip_sampler(cfg.INPUT.VIDEO.SAMPLER, cfg.INPUT.VIDEO.SHORT_PAD),
        cfg.INPUT.VIDEO.SEQ_LEN,
        relabel=True,
    )


def _train_loader_from_config(cfg, *, train_set=None, sampler=None, images: Optional[bool] = False, **kwargs):
    """``images``: ``False`` clips, ``True`` images, ``None`` images exactly when every train
    item has one frame."""
    if train_set is None:
        items = load_train_items(cfg)
        if comm.is_main_process():
            check_train_keypoints(items, float(cfg.INPUT.KEYPOINTS_MIN_MATCH))
        if images is None:
            images = is_image_items(items)
            if not images and any(isinstance(it[0], str) or len(it[0]) == 1 for it in items):
                logger.info("The train set mixes tracklets and single images: loading everything as clips")
        train_set = _image_train_set(cfg, items) if images else _video_train_set(cfg, items)
    if sampler is None:
        logger.info(f"Using training sampler {cfg.DATALOADER.SAMPLER_TRAIN}")
        sampler = build_train_sampler(cfg, train_set)
    return {
        "train_set": train_set,
        "sampler": sampler,
        "total_batch_size": cfg.SOLVER.IMS_PER_BATCH,
        "num_workers": cfg.DATALOADER.NUM_WORKERS,
        **kwargs,
    }


def _reid_train_loader_from_config(cfg, *, train_set=None, sampler=None, **kwargs):
    return _train_loader_from_config(cfg, train_set=train_set, sampler=sampler, images=None, **kwargs)


def _make_train_loader(train_set, sampler, total_batch_size: int, num_workers: int) -> DataLoader:
    world = comm.get_world_size()
    if total_batch_size % world:
        raise ValueError(f"SOLVER.IMS_PER_BATCH={total_batch_size} is not divisible by the world size {world}")
    batch_sampler = BatchSampler(sampler, total_batch_size // world, drop_last=True)
    collate = collate_image_batch if isinstance(train_set, ImageTrainDataset) else collate_video_batch
    return DataLoader(train_set, batch_sampler=batch_sampler, **_loader_kwargs(num_workers, collate))


@configurable(from_config=_train_loader_from_config)
def build_video_train_loader(train_set, *, sampler, total_batch_size: int, num_workers: int = 0) -> DataLoader:
    """Infinite loader of train clip batches (images become 1-frame tracklets);
    ``loader.dataset`` is the :class:`VideoTrainDataset` (``num_classes``, ``len()``). Each
    rank gets ``total_batch_size // world_size`` clips per batch."""
    return _make_train_loader(train_set, sampler, total_batch_size, num_workers)


@configurable(from_config=_reid_train_loader_from_config)
def build_reid_train_loader(train_set, *, sampler, total_batch_size: int, num_workers: int = 0) -> DataLoader:
    """Infinite loader of train batches: ``(B, C, H, W)`` images for image datasets
    (:class:`ImageTrainDataset`), ``(B, T, C, H, W)`` clips otherwise
    (:class:`VideoTrainDataset`). Each rank gets ``total_batch_size // world_size`` samples."""
    return _make_train_loader(train_set, sampler, total_batch_size, num_workers)


def _test_set(cfg, dataset, images: Optional[bool]):
    items = list(dataset.query) + list(dataset.gallery)
    if images is None:
        images = is_image_items(items)
    if not images:
        return VideoTestDataset(items, build_clip_transforms(cfg, is_train=False), cfg.TEST.VIDEO.SEQ_LEN,
                                cfg.TEST.VIDEO.MAX_CLIPS, cfg.TEST.VIDEO.SHORT_PAD,
                                cfg.TEST.VIDEO.CLIP_SELECT)
    has_kp = any(extras_of(it).get("keypoints") for it in items)
    if has_kp and cfg.INPUT.CROP.ENABLED:
        raise ValueError("INPUT.CROP.ENABLED with test images that carry keypoints: the keypoints cannot follow "
                         "the host's center crop; disable INPUT.CROP or drop the keypoints")
    return ImageTestDataset(items, build_image_transforms(cfg, is_train=False))


def _test_loader_from_config(cfg, dataset_name=None, *, test_set=None, num_query=0, dataset=None,
                             images: Optional[bool] = False, **kwargs):
    if test_set is None:
        if dataset_name is None:
            raise ValueError("a test loader needs a dataset_name when no test_set is given")
        dataset = get_dataset(cfg, dataset_name)
        if comm.is_main_process():
            dataset.show_test()
        test_set = _test_set(cfg, dataset, images)
        num_query = len(dataset.query)
    return {
        "test_set": test_set,
        "test_batch_size": cfg.TEST.IMS_PER_BATCH,
        "num_query": num_query,
        "dataset": dataset,
        "num_workers": cfg.DATALOADER.NUM_WORKERS_TEST,
        **kwargs,
    }


def _reid_test_loader_from_config(cfg, dataset_name=None, *, test_set=None, num_query=0, dataset=None, **kwargs):
    return _test_loader_from_config(cfg, dataset_name, test_set=test_set, num_query=num_query, dataset=dataset,
                                    images=None, **kwargs)


def _make_test_loader(test_set, test_batch_size: int, num_workers: int) -> DataLoader:
    mini = max(1, test_batch_size // comm.get_world_size())
    batch_sampler = BatchSampler(InferenceSampler(len(test_set)), mini, drop_last=False)
    collate = collate_image_batch if isinstance(test_set, ImageTestDataset) else collate_video_batch
    return DataLoader(test_set, batch_sampler=batch_sampler, **_loader_kwargs(num_workers, collate))


@configurable(from_config=_test_loader_from_config)
def build_video_test_loader(test_set, test_batch_size: int, num_query: int, dataset=None, num_workers: int = 0):
    """``(loader, num_query, dataset)``: a loader of dense test clips (``test_batch_size``
    clips per global batch, split over ranks by the host's ``InferenceSampler``), the number
    of query tracklets (``track_idx < num_query`` are queries), and the registry dataset
    object (``query``, ``gallery``, ``eval_protocol``; ``None`` when ``test_set`` was given)."""
    return _make_test_loader(test_set, test_batch_size, num_workers), num_query, dataset


@configurable(from_config=_reid_test_loader_from_config)
def build_reid_test_loader(test_set, test_batch_size: int, num_query: int, dataset=None, num_workers: int = 0):
    """Like :func:`build_video_test_loader`, but an image dataset (every query / gallery item
    one frame) gives one ``(C, H, W)`` image per item (:class:`ImageTestDataset`, the
    host's test transform; ``track_idx`` is the item index), whatever ``TEST.VIDEO.*`` says."""
    return _make_test_loader(test_set, test_batch_size, num_workers), num_query, dataset


def is_image_test_loader(loader) -> bool:
    """Whether a test loader from :func:`build_reid_test_loader` yields images (not clips)."""
    return isinstance(getattr(loader, "dataset", None), ImageTestDataset)
