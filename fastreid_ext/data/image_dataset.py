"""Image datasets as images: one ``(C, H, W)`` image per sample, ``(B, C, H, W)`` batches.

A dataset is an *image dataset* when every item has exactly one frame: the host's
``(img_path, pid, camid)`` items (Market1501, DukeMTMC, MSMT17, CUHK03, VeRi, VehicleID, ...)
and the plugin's 1-frame tracklets ``((img_path,), pid, camid[, extras])`` (CUHK01,
SyntheticMarket1501). Such items never go through the clip path: ``INPUT.VIDEO.*`` and
``TEST.VIDEO.*`` do not apply to them (a clip of ``T`` copies of one image is ``T`` times the
compute for the same information).

Transforms are the host's ``fastreid.data.transforms.build_transforms(cfg, is_train)``, so every
host ``INPUT.*`` key means what it means in the host (:func:`build_image_transforms`), with one
narrow fix: ``INPUT.AFFINE`` builds ``T.RandomAffine(..., resample=False, fillcolor=0)``
(``fastreid/data/transforms/build.py:96``), arguments torchvision removed in 0.13; the same
affine is built with ``fill=0`` instead.

Images are read like the host's ``CommDataset`` (``fastreid/data/common.py``: PIL through
``fastreid.data.data_utils.read_image``) but always converted to RGB: the host's ``ToTensor``
cannot take PIL modes ``'1'`` / ``'I;16'`` on numpy 2 (``np.array(..., copy=False)``,
``fastreid/data/transforms/functional.py:38-46``), and 1- / 4-channel images would not fit a
3-channel model anyway. An unreadable image raises :class:`~.frame_io.FrameReadError` naming it.

Keypoints (items whose extras name a ``keypoints`` JSON, see :mod:`.video_dataset`): the host's
transforms cannot move keypoints with the image, so a *train* set whose items carry keypoints
uses the plugin's keypoint-aware transform (:func:`~.transforms.build_clip_transforms`:
``SIZE_TRAIN``, ``PADDING``, ``FLIP``, ``REA``; any other enabled ``INPUT`` augmentation raises)
on the one frame; the sample's ``keypoints`` are ``(17, 3)``. A test set with keypoints keeps the
host's test transform (a resize) and moves the keypoints with it; ``INPUT.CROP`` (a center
crop at test time) with keypoints raises.
"""
from __future__ import annotations

import logging
import warnings
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torchvision.transforms as T
from torch.utils.data import Dataset

from fastreid_ext.utils.keypoints import NUM_JOINTS

from .frame_io import FrameReadError
from .items import Item, RelabelledItems, as_item
from .transforms import ClipParams, build_clip_transforms
from .video_dataset import as_tracklet, clip_keypoints, collate_samples, load_item, worker_rng

__all__ = [
    "is_image_items", "as_image_item", "build_image_transforms", "read_rgb_image",
    "ImageTrainDataset", "ImageTestDataset", "collate_image_batch", "keypoint_train_transform",
]

logger = logging.getLogger(__name__)

# The host's ToTensor builds every image with the deprecated ``torch.ByteStorage.from_buffer``
# (fastreid/data/transforms/functional.py:46); torch's deprecation warning says nothing to a user.
warnings.filterwarnings("ignore", message="TypedStorage is deprecated", category=UserWarning,
                        module=r"fastreid\.data\.transforms\.functional")


def _frames_of(item: Sequence) -> Tuple[str, ...]:
    paths = item[0]
    return (paths,) if isinstance(paths, str) else tuple(paths)


def is_image_items(items: Sequence) -> bool:
    """True when ``items`` is not empty and every item has exactly one frame (a ``str`` path
    or a 1-path sequence): an image dataset."""
    return bool(items) and all(len(_frames_of(item)) == 1 for item in items)


def as_image_item(item: Sequence) -> Item:
    """``((path,), pid, camid[, extras])`` or ``(path, pid, camid[, extras])`` ->
    ``Item(path, pid, camid, extras)`` (the host's item form, a ``str`` path; the input is not
    modified)."""
    item = as_item(item)
    paths = _frames_of(item)
    if len(paths) != 1:
        raise ValueError(f"an image item has one path, got {len(paths)} (pid {item.pid!r}, camid {item.camid!r})")
    return item._replace(paths=paths[0])


def _has_keypoints(item: Item) -> bool:
    return bool(item.extras.get("keypoints"))


def build_image_transforms(cfg, is_train: bool = True) -> Callable:
    """The host's ``build_transforms(cfg, is_train)`` (PIL image -> float32 ``(C, H, W)``,
    values 0..255), with ``INPUT.AFFINE`` built for today's torchvision (module docstring)."""
    from fastreid.data.transforms import build_transforms

    if not (is_train and cfg.INPUT.AFFINE.ENABLED):
        return build_transforms(cfg, is_train=is_train)
    c = cfg.clone()
    c.defrost()
    c.INPUT.AFFINE.ENABLED = False
    composed = build_transforms(c, is_train=True)
    ops = list(composed.transforms)
    # the host's order (build.py:91-100): ..., flip, color jitter, affine, AugMix, ToTensor, ...
    from fastreid.data.transforms.transforms import AugMix, ToTensor

    at = next(i for i, op in enumerate(ops) if isinstance(op, (AugMix, ToTensor)))
    ops.insert(at, T.RandomAffine(degrees=10, translate=None, scale=[0.9, 1.1], shear=0.1, fill=0))
    return T.Compose(ops)


def read_rgb_image(path: str):
    """The host's ``read_image(path, "RGB")`` (a PIL image); unreadable -> ``FrameReadError``."""
    from fastreid.data.data_utils import read_image

    try:
        return read_image(path, "RGB")
    except (OSError, ValueError, SyntaxError) as e:  # PIL's decode errors
        raise FrameReadError(f"cannot read image {path!r}: {e}") from None


class _ImageSet(Dataset):
    """Items in the host's form ``(img_path, pid, camid[, extras])``."""

    def __init__(self, items: Sequence, transform: Callable):
        self.items: List[Item] = [as_image_item(i) for i in items]
        self.transform = transform

    @property
    def img_items(self) -> List[Item]:
        """Host name of the item list (samplers read ``img_items``)."""
        return self.items

    def __len__(self) -> int:
        return len(self.items)

    def _image(self, item: Item) -> torch.Tensor:
        img = self.transform(read_rgb_image(item.paths))
        if not isinstance(img, torch.Tensor) or img.dim() != 3:
            raise TypeError(f"the image transform must return a (C, H, W) tensor, got {type(img).__name__} "
                            f"{tuple(getattr(img, 'shape', ()))}")
        return img.float()


class ImageTrainDataset(RelabelledItems, _ImageSet):
    """Train images, pids / camids relabelled like the host's ``CommDataset`` (sorted order).

    Args:
        items: image items (module docstring); not modified.
        transform: PIL image -> ``(C, H, W)`` tensor (:func:`build_image_transforms`), used
            for items without keypoints.
        keypoint_transform: the clip transform (``frames, rng -> ((T, C, H, W), ClipParams)``)
            for items with keypoints; required when some item has them.
        relabel: map pids / camids to ``0..N-1`` (``pid_dict`` / ``cam_dict``).
    """

    def __init__(self, items: Sequence, transform: Callable, keypoint_transform: Optional[Callable] = None,
                 relabel: bool = True):
        super().__init__(items, transform)
        self.keypoint_transform = keypoint_transform
        if keypoint_transform is None and any(_has_keypoints(i) for i in self.items):
            raise ValueError("items carry keypoints: a keypoint_transform is needed to move them with the image")
        self._set_labels(relabel)

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        if _has_keypoints(item):
            # one frame through the keypoint-aware clip transform, (1, C, H, W) -> (C, H, W)
            clip = load_item(as_tracklet(item), [0], self.keypoint_transform, worker_rng())
            # float like the host transforms of the items without keypoints (the clip is uint8)
            out = {"images": clip["images"][0].float(), "img_paths": item.paths, "keypoints": clip["keypoints"][0]}
        else:
            out = {"images": self._image(item), "img_paths": item.paths}
        out.update(self.labels(item))
        return out


class ImageTestDataset(_ImageSet):
    """Query + gallery images in order; ``track_idx`` is the item's index (one "clip" per
    item for the evaluator), pids / camids raw. Items with keypoints get ``(17, 3)``
    keypoints moved with the test transform's resize (``INPUT.CROP`` with keypoints raises)."""

    def __init__(self, items: Sequence, transform: Callable):
        super().__init__(items, transform)

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        pil = read_rgb_image(item.paths)
        img = self.transform(pil)
        out = {"images": img.float(), "img_paths": item.paths, "targets": item.pid, "camids": item.camid,
               "track_idx": index}
        kp = item.extras.get("keypoints")
        if kp:
            params = ClipParams(out_size=tuple(img.shape[-2:]), in_sizes=((pil.height, pil.width),))
            out["keypoints"] = clip_keypoints(kp, [item.paths], params)[0]
        return out


def collate_image_batch(batch: List[dict]) -> dict:
    """Stack image samples: ``images`` (B, C, H, W) float32, ``targets`` / ``camids`` /
    ``track_idx`` (B,) int64, ``keypoints`` (B, 17, 3) when some sample has them (the others
    get zeros, ``v = 0``), ``img_paths`` list."""
    return collate_samples(batch, keypoints_shape=(NUM_JOINTS, 3))


def keypoint_train_transform(cfg) -> Callable:
    """The keypoint-aware train transform for image items with keypoints (module docstring):
    the clip transform of ``cfg`` on one frame, without the per-frame erasing of
    ``INPUT.VIDEO.FRAME_ERASE`` (a video key)."""
    c = cfg.clone()
    c.defrost()
    c.INPUT.VIDEO.FRAME_ERASE.ENABLED = False
    return build_clip_transforms(c, is_train=True)
