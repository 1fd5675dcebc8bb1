"""Train / test loaders of clips: ``build_video_train_loader(cfg)``,
``build_video_test_loader(cfg, dataset_name)``.

Plain ``torch.utils.data.DataLoader`` (never the host's CUDA-only ``DataLoaderX``),
``pin_memory`` only when CUDA is available, persistent workers when there are workers, and
:func:`~fastreid_ext.data.video_dataset.collate_video_batch` making the batch dict of
``docs/architecture.md``. Both functions are ``@configurable`` (host style): call them with a
cfg, or with explicit datasets / samplers.
"""
from __future__ import annotations

import logging
from typing import Optional

import cv2
import torch
from fastreid.config import configurable
from fastreid.data import samplers as host_samplers
from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.utils import comm
from torch.utils.data import BatchSampler, DataLoader

from .clip_sampler import build_train_clip_sampler
from .datasets.tracklet_dataset import datasets_root
from .samplers import IdentityBalancedSampler, InferenceSampler
from .transforms import build_clip_transforms
from .video_dataset import VideoTestDataset, VideoTrainDataset, collate_video_batch

logger = logging.getLogger(__name__)

# DATALOADER.SAMPLER_TRAIN -> sampler. "NaiveIdentitySampler" (the host's P x K sampler name,
# used by its bag-of-tricks configs) maps to the tracklet P x K sampler.
_TRAIN_SAMPLERS = ("TrainingSampler", "NaiveIdentitySampler", "IdentityBalancedSampler")


def get_dataset(cfg, name: str):
    """``DATASET_REGISTRY.get(name)(root=..., split=..., protocol=...)``; unknown names raise
    ``KeyError`` listing the registered datasets."""
    known = sorted(DATASET_REGISTRY._obj_map)
    if name not in known:
        raise KeyError(f"unknown dataset {name!r}; registered datasets: {known}")
    return DATASET_REGISTRY.get(name)(
        root=datasets_root(cfg), split=cfg.DATASETS.SPLIT, protocol=cfg.DATASETS.PROTOCOL
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
    raise KeyError(f"unknown DATALOADER.SAMPLER_TRAIN {name!r} for video loaders; known: {list(_TRAIN_SAMPLERS)}")


def _worker_init(worker_id: int) -> None:
    """One OpenCV thread per DataLoader worker (the workers already run in parallel)."""
    cv2.setNumThreads(1)


def _loader_kwargs(num_workers: int) -> dict:
    return dict(
        num_workers=num_workers,
        collate_fn=collate_video_batch,
        worker_init_fn=_worker_init if num_workers > 0 else None,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
    )


def _train_loader_from_config(cfg, *, train_set=None, sampler=None, **kwargs):
    if train_set is None:
        items = []
        for name in cfg.DATASETS.NAMES:
            data = get_dataset(cfg, name)
            if comm.is_main_process():
                data.show_train()
            items.extend(data.train)
        train_set = VideoTrainDataset(
            items,
            build_clip_transforms(cfg, is_train=True),
            build_train_clip_sampler(cfg.INPUT.VIDEO.SAMPLER),
            cfg.INPUT.VIDEO.SEQ_LEN,
            relabel=True,
        )
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


@configurable(from_config=_train_loader_from_config)
def build_video_train_loader(train_set, *, sampler, total_batch_size: int, num_workers: int = 0) -> DataLoader:
    """Infinite loader of train clip batches; ``loader.dataset`` is the
    :class:`VideoTrainDataset` (``num_classes``, ``len()``). Each rank gets
    ``total_batch_size // world_size`` clips per batch."""
    world = comm.get_world_size()
    if total_batch_size % world:
        raise ValueError(f"SOLVER.IMS_PER_BATCH={total_batch_size} is not divisible by the world size {world}")
    batch_sampler = BatchSampler(sampler, total_batch_size // world, drop_last=True)
    return DataLoader(train_set, batch_sampler=batch_sampler, **_loader_kwargs(num_workers))


def _test_loader_from_config(cfg, dataset_name=None, *, test_set=None, num_query=0, dataset=None, **kwargs):
    if test_set is None:
        if dataset_name is None:
            raise ValueError("build_video_test_loader needs a dataset_name when no test_set is given")
        dataset = get_dataset(cfg, dataset_name)
        if comm.is_main_process():
            dataset.show_test()
        test_set = VideoTestDataset(
            dataset.query + dataset.gallery,
            build_clip_transforms(cfg, is_train=False),
            cfg.TEST.VIDEO.SEQ_LEN,
            cfg.TEST.VIDEO.MAX_CLIPS,
        )
        num_query = len(dataset.query)
    return {
        "test_set": test_set,
        "test_batch_size": cfg.TEST.IMS_PER_BATCH,
        "num_query": num_query,
        "dataset": dataset,
        "num_workers": cfg.DATALOADER.NUM_WORKERS_TEST,
        **kwargs,
    }


@configurable(from_config=_test_loader_from_config)
def build_video_test_loader(test_set, test_batch_size: int, num_query: int, dataset=None, num_workers: int = 0):
    """``(loader, num_query, dataset)``: a loader of dense test clips (``test_batch_size``
    clips per global batch, split over ranks by the host's ``InferenceSampler``), the number
    of query tracklets (``track_idx < num_query`` are queries), and the registry dataset
    object (``query``, ``gallery``, ``eval_protocol``; ``None`` when ``test_set`` was given)."""
    mini = max(1, test_batch_size // comm.get_world_size())
    batch_sampler = BatchSampler(InferenceSampler(len(test_set)), mini, drop_last=False)
    loader = DataLoader(test_set, batch_sampler=batch_sampler, **_loader_kwargs(num_workers))
    return loader, num_query, dataset
