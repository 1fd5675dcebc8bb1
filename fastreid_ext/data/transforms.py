"""Clip transforms: one set of random parameters per clip, or per frame.

Granularity (``INPUT.VIDEO.AUG_GRANULARITY``):

- ``clip`` (default): the same crop / flip / erase for every frame of a clip. Sequence-level
  augmentation beats frame-level augmentation (Zhang et al., "Multi-Granularity Reference-Aided
  Attentive Feature Aggregation for Video-based Person Re-identification", CVPR 2020, 4.2).
- ``frame``: every frame draws its own crop, flip and random-erasing rectangle, as a torchvision
  ``transform`` applied to each frame in turn does (the public codes of both Pathak et al.
  papers: ``tools/video_loader.py`` applies ``self.transform(img)`` frame by frame).

The train transform draws: resize to ``INPUT.SIZE_TRAIN``, pad ``INPUT.PADDING.SIZE`` + random
crop back to the size, horizontal flip (``INPUT.FLIP``), random erasing (``INPUT.REA``, Zhong
et al., Alg. 1 with ``sl=0.02, sh=0.4, r1=0.3``; unlabelled), and optionally labelled per-frame
random erasing (``INPUT.VIDEO.FRAME_ERASE``: each frame independently, its own rectangle,
whatever the granularity), whose frames are labelled for the attention loss of the
video-baseline paper ("randomly erased frames are labelled 1, otherwise 0").
``INPUT.VIDEO.REA_SPARE_ONE`` (a public code's ``tools/video_loader.py:228-234``): when the
per-frame REA hit every frame of a clip of ``T > 1`` frames, the last frame is left clean.
The test transform only resizes to ``INPUT.SIZE_TEST``.

Input: a sequence of ``T`` RGB ``uint8`` ``(H, W, 3)`` numpy frames (or torch ``uint8``
``(H, W, 3)`` / ``(3, H, W)`` tensors). Output: ``(T, C, H, W)`` with values 0..255, not
normalised (the model converts and normalises on its device,
:func:`fastreid_ext.modeling.video_utils.preprocess_clip`): ``uint8`` from the train transform
(every step works on bytes: a quarter of the memory traffic of float32 through crop, erasing,
collation and the host-to-device copy; the erasing fill ``INPUT.REA.VALUE`` is rounded to the
nearest integer, e.g. the host's ``(123.675, 116.28, 103.53)`` -> ``(124, 116, 104)``, at most
0.5 grey levels from the float fill), float32 from the test transform. With the fill rounded
the train output converted to float equals the float pipeline's exactly. The
:class:`ClipParams` that were applied let :func:`transform_keypoints` move per-frame COCO
keypoints consistently.

Coordinates are continuous pixels: pixel ``i`` covers ``[i, i + 1)``, so a resize by ``s``
maps ``x -> s * x`` and a flip of a ``W``-wide frame maps ``x -> W - x``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

from fastreid_ext.utils.keypoints import COCO_FLIP_PERM

Rect = Tuple[int, int, int, int]  # (y, x, h, w) in the output frame


_PAD_MODES = {
    "constant": cv2.BORDER_CONSTANT,
    "edge": cv2.BORDER_REPLICATE,
    "reflect": cv2.BORDER_REFLECT_101,  # torchvision "reflect" (edge not repeated)
    "symmetric": cv2.BORDER_REFLECT,  # torchvision "symmetric" (edge repeated)
}


GRANULARITIES = ("clip", "frame")


@dataclass(frozen=True)
class ClipParams:
    """The parameters one clip was transformed with: ``crop`` / ``flip`` / ``erase`` shared by
    all frames, or, at frame granularity, ``frame_crops`` / ``frame_flips`` / ``frame_rea``
    (one entry per frame; when given they replace the shared ones)."""

    out_size: Tuple[int, int]  # (H, W) of the output frames
    in_sizes: Tuple[Tuple[int, int], ...]  # (H_in, W_in) of each input frame
    pad: int = 0  # border added on every side after the resize
    crop: Tuple[int, int] = (0, 0)  # (oy, ox) of the crop in the padded frame
    flip: bool = False
    erase: Optional[Rect] = None  # clip-level random erasing, same rectangle in every frame
    frame_erase: Tuple[Optional[Rect], ...] = ()  # labelled per-frame erasing (empty: off)
    frame_crops: Tuple[Tuple[int, int], ...] = ()  # frame granularity: (oy, ox) of each frame
    frame_flips: Tuple[bool, ...] = ()  # frame granularity: flip of each frame
    frame_rea: Tuple[Optional[Rect], ...] = ()  # frame granularity: unlabelled REA of each frame

    @property
    def num_frames(self) -> int:
        return len(self.in_sizes)

    def crop_at(self, t: int) -> Tuple[int, int]:
        return self.frame_crops[t] if self.frame_crops else self.crop

    def flip_at(self, t: int) -> bool:
        return self.frame_flips[t] if self.frame_flips else self.flip

    def rea_at(self, t: int) -> Optional[Rect]:
        return self.frame_rea[t] if self.frame_rea else self.erase

    @property
    def scales(self) -> np.ndarray:
        """``(T, 2)`` resize factors ``(sy, sx)`` of each frame."""
        H, W = self.out_size
        return np.array([(H / h, W / w) for h, w in self.in_sizes], dtype=np.float64)

    @property
    def erased(self) -> np.ndarray:
        """``(T,)`` bool: frames hit by per-frame random erasing."""
        if not self.frame_erase:
            return np.zeros(self.num_frames, dtype=bool)
        return np.array([r is not None for r in self.frame_erase], dtype=bool)


def _to_hwc_uint8(frame) -> np.ndarray:
    if isinstance(frame, torch.Tensor):
        frame = frame.detach().cpu().numpy()
        if frame.ndim == 3 and frame.shape[0] in (1, 3) and frame.shape[-1] not in (1, 3):
            frame = frame.transpose(1, 2, 0)
    frame = np.asarray(frame)
    if frame.ndim == 2:
        frame = frame[:, :, None]
    if frame.ndim != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (H, W, C) frame, got {frame.dtype} {frame.shape}")
    if frame.shape[2] == 1:
        frame = np.repeat(frame, 3, axis=2)
    return frame


def _resize(frame: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Bicubic when enlarging, area averaging when shrinking (no aliasing)."""
    H, W = size
    h, w = frame.shape[:2]
    if (h, w) == (H, W):
        return frame
    interp = cv2.INTER_AREA if (H <= h and W <= w) else cv2.INTER_CUBIC
    return cv2.resize(frame, (W, H), interpolation=interp)


def sample_erase_rect(
    size: Tuple[int, int], rng: np.random.Generator, sl: float = 0.02, sh: float = 0.4,
    r1: float = 0.3, attempts: int = 100,
) -> Optional[Rect]:
    """A random-erasing rectangle (Zhong et al., "Random Erasing Data Augmentation", Alg. 1):
    area ``S_e ~ U(sl, sh) * H * W``, aspect ``r_e ~ U(r1, 1 / r1)``, ``h = sqrt(S_e r_e)``,
    ``w = sqrt(S_e / r_e)``; retried until it fits. ``None`` when no attempt fits."""
    H, W = size
    for _ in range(attempts):
        area = rng.uniform(sl, sh) * H * W
        aspect = rng.uniform(r1, 1.0 / r1)
        h = int(round(math.sqrt(area * aspect)))
        w = int(round(math.sqrt(area / aspect)))
        if 0 < h < H and 0 < w < W:
            y = int(rng.integers(0, H - h + 1))
            x = int(rng.integers(0, W - w + 1))
            return (y, x, h, w)
    return None


def _default_rng(rng: Optional[np.random.Generator]) -> np.random.Generator:
    """A generator seeded from torch's RNG, which DataLoader seeds per worker (a numpy
    generator created once would repeat the same draws in every forked worker)."""
    if rng is not None:
        return rng
    return np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))


def _pad_crop(f: np.ndarray, pad: int, crop: Tuple[int, int], mode: str) -> np.ndarray:
    """``f`` padded by ``pad`` on every side (``mode``) and cropped back to its size at
    ``crop = (oy, ox)`` of the padded frame. Zero padding (``constant``) is a shifted copy into
    a zeroed frame (no padded intermediate)."""
    if not pad:
        return f
    H, W = f.shape[:2]
    oy, ox = crop
    if mode != "constant":
        g = cv2.copyMakeBorder(f, pad, pad, pad, pad, _PAD_MODES[mode])
        return g[oy:oy + H, ox:ox + W]
    dy, dx = oy - pad, ox - pad  # output pixel (y, x) is input pixel (y + dy, x + dx)
    out = np.zeros_like(f)
    out[max(0, -dy):H - max(0, dy), max(0, -dx):W - max(0, dx)] = \
        f[max(0, dy):H - max(0, -dy), max(0, dx):W - max(0, -dx)]
    return out


def erase_fill(value: Sequence[float]) -> np.ndarray:
    """``INPUT.REA.VALUE`` (0..255 scale) as the ``uint8`` ``(C, 1, 1)`` fill of the train
    transform: each value rounded to the nearest integer; values outside 0..255 raise."""
    v = np.asarray(value, dtype=np.float64).reshape(-1, 1, 1)
    if v.size == 0 or (v < 0).any() or (v > 255).any():
        raise ValueError(f"random-erasing fill INPUT.REA.VALUE must be values in 0..255 (pixel scale, "
                         f"the train clips are uint8), got {tuple(np.ravel(value))}")
    return np.rint(v).astype(np.uint8)


def _stack(frames: Sequence[np.ndarray]) -> np.ndarray:
    """``T`` HWC uint8 frames -> float32 ``(T, C, H, W)`` (contiguous, values 0..255)."""
    h, w, c = frames[0].shape
    out = np.empty((len(frames), c, h, w), dtype=np.float32)
    for t, f in enumerate(frames):
        out[t] = f.transpose(2, 0, 1)  # one converting copy per frame
    return out


class ClipTrainTransform:
    """Sequence-consistent train augmentation; see the module docstring."""

    def __init__(
        self,
        size: Tuple[int, int],
        padding: int = 0,
        pad_mode: str = "constant",
        flip_prob: float = 0.0,
        rea_prob: float = 0.0,
        rea_value: Sequence[float] = (0.485 * 255, 0.456 * 255, 0.406 * 255),
        frame_erase_prob: float = 0.0,
        rea_sl: float = 0.02,
        rea_sh: float = 0.4,
        rea_r1: float = 0.3,
        granularity: str = "clip",
        rea_spare_one: bool = False,
    ):
        if len(size) != 2:
            raise ValueError(f"size must be (H, W), got {size}")
        if granularity not in GRANULARITIES:
            raise ValueError(f"INPUT.VIDEO.AUG_GRANULARITY must be one of {GRANULARITIES}, got {granularity!r}")
        if pad_mode not in _PAD_MODES:
            raise ValueError(f"unknown padding mode {pad_mode!r}; known: {sorted(_PAD_MODES)}")
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        self.size = (int(size[0]), int(size[1]))
        self.padding = int(padding)
        self.pad_mode = pad_mode
        self.flip_prob = float(flip_prob)
        self.rea_prob = float(rea_prob)
        self.rea_value = erase_fill(rea_value)  # uint8 (C, 1, 1)
        self.frame_erase_prob = float(frame_erase_prob)
        self.rea_args = dict(sl=rea_sl, sh=rea_sh, r1=rea_r1)
        self.granularity = granularity
        self.rea_spare_one = bool(rea_spare_one)

    def _draw_crop_flip_rea(self, rng: np.random.Generator):
        """One draw of ``((oy, ox), flip, REA rectangle or None)``."""
        p = self.padding
        oy = int(rng.integers(0, 2 * p + 1)) if p else 0
        ox = int(rng.integers(0, 2 * p + 1)) if p else 0
        flip = bool(rng.random() < self.flip_prob)
        erase = None
        if self.rea_prob > 0 and rng.random() < self.rea_prob:
            erase = sample_erase_rect(self.size, rng, **self.rea_args)
        return (oy, ox), flip, erase

    def sample_params(self, in_sizes: Sequence[Tuple[int, int]], rng: np.random.Generator) -> ClipParams:
        """Draw the parameters of one clip (``T = len(in_sizes)`` frames)."""
        per_frame = {}
        crop, flip, erase = self._draw_crop_flip_rea(rng)
        if self.granularity == "frame":
            draws = [(crop, flip, erase)] + [self._draw_crop_flip_rea(rng) for _ in in_sizes[1:]]
            rea = [d[2] for d in draws]
            if self.rea_spare_one and len(rea) > 1 and all(r is not None for r in rea):
                rea[-1] = None
            per_frame = dict(frame_crops=tuple(d[0] for d in draws),
                             frame_flips=tuple(d[1] for d in draws), frame_rea=tuple(rea))
        frame_erase: Tuple[Optional[Rect], ...] = ()
        if self.frame_erase_prob > 0:
            frame_erase = tuple(
                sample_erase_rect(self.size, rng, **self.rea_args) if rng.random() < self.frame_erase_prob else None
                for _ in in_sizes
            )
        return ClipParams(
            out_size=self.size, in_sizes=tuple((int(h), int(w)) for h, w in in_sizes),
            pad=self.padding, crop=crop, flip=flip, erase=erase, frame_erase=frame_erase,
            **per_frame,
        )

    def apply(self, frames: Sequence, params: ClipParams) -> torch.Tensor:
        """Apply ``params`` to every frame: ``T`` frames -> ``uint8`` ``(T, C, H, W)``; resize,
        pad + crop, flip and erasing all on bytes, each frame written once into the clip."""
        H, W = params.out_size
        clip = None
        for t, f in enumerate(frames):
            f = _pad_crop(_resize(_to_hwc_uint8(f), (H, W)), params.pad, params.crop_at(t), self.pad_mode)
            if params.flip_at(t):
                f = f[:, ::-1]
            if clip is None:
                clip = np.empty((len(frames), f.shape[2], H, W), dtype=np.uint8)
            clip[t] = f.transpose(2, 0, 1)
        for t in range(len(frames)):
            for rect in (params.rea_at(t), params.frame_erase[t] if params.frame_erase else None):
                if rect is not None:
                    y, x, h, w = rect
                    clip[t, :, y:y + h, x:x + w] = self.rea_value
        return torch.from_numpy(clip)

    def __call__(self, frames: Sequence, rng: Optional[np.random.Generator] = None):
        """``frames`` -> ``(clip (T, C, H, W) uint8, ClipParams)``."""
        frames = [_to_hwc_uint8(f) for f in frames]
        params = self.sample_params([f.shape[:2] for f in frames], _default_rng(rng))
        return self.apply(frames, params), params

    def __repr__(self) -> str:
        return (f"ClipTrainTransform(size={self.size}, padding={self.padding}, pad_mode={self.pad_mode!r}, "
                f"flip_prob={self.flip_prob}, rea_prob={self.rea_prob}, frame_erase_prob={self.frame_erase_prob}, "
                f"granularity={self.granularity!r}, rea_spare_one={self.rea_spare_one})")


class ClipTestTransform:
    """Resize every frame to ``size``; same call signature as :class:`ClipTrainTransform`."""

    def __init__(self, size: Tuple[int, int]):
        if len(size) != 2:
            raise ValueError(f"size must be (H, W), got {size}")
        self.size = (int(size[0]), int(size[1]))

    def __call__(self, frames: Sequence, rng: Optional[np.random.Generator] = None):
        frames = [_to_hwc_uint8(f) for f in frames]
        params = ClipParams(out_size=self.size, in_sizes=tuple(f.shape[:2] for f in frames))
        return torch.from_numpy(_stack([_resize(f, self.size) for f in frames])), params

    def __repr__(self) -> str:
        return f"ClipTestTransform(size={self.size})"


def transform_keypoints(keypoints: np.ndarray, params: ClipParams) -> np.ndarray:
    """Move per-frame keypoints with the clip's transform.

    Args:
        keypoints: ``(T, 17, 3)`` COCO joints ``(x, y, v)`` in pixels of each *input* frame.
        params: what :class:`ClipTrainTransform` / :class:`ClipTestTransform` applied.

    Returns:
        float32 ``(T, 17, 3)``: ``x, y`` in ``[0, 1]`` of the output frame
        (``x' = (s_x x + pad - o_x) / W``, mirrored ``1 - x'`` with left/right joints swapped
        when flipped; each frame with its own crop / flip at frame granularity); ``v`` set to 0 for joints the crop moved outside the frame.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.shape != (params.num_frames, 17, 3):
        raise ValueError(f"keypoints must be ({params.num_frames}, 17, 3), got {kp.shape}")
    H, W = params.out_size
    s = params.scales  # (T, 2) = (sy, sx)
    T = params.num_frames
    oy = np.array([params.crop_at(t)[0] for t in range(T)], dtype=np.float64)[:, None]
    ox = np.array([params.crop_at(t)[1] for t in range(T)], dtype=np.float64)[:, None]
    x = (kp[..., 0] * s[:, 1:2] + params.pad - ox) / W
    y = (kp[..., 1] * s[:, 0:1] + params.pad - oy) / H
    v = kp[..., 2].copy()
    flips = np.array([params.flip_at(t) for t in range(T)], dtype=bool)
    if flips.any():
        perm = list(COCO_FLIP_PERM)
        x[flips] = 1.0 - x[flips]
        x[flips], y[flips], v[flips] = x[flips][:, perm], y[flips][:, perm], v[flips][:, perm]
    outside = (x < 0) | (x > 1) | (y < 0) | (y > 1)
    v[outside] = 0.0
    return np.stack([x, y, v], axis=-1).astype(np.float32)


_UNSUPPORTED = ("CROP", "CJ", "AFFINE", "AUTOAUG", "AUGMIX", "RPT")


def build_clip_transforms(cfg, is_train: bool = True):
    """The clip transform of ``cfg`` (train: :class:`ClipTrainTransform`, test:
    :class:`ClipTestTransform`). Host augmentations this pipeline does not implement raise
    when enabled instead of being silently ignored."""
    if not is_train:
        return ClipTestTransform(tuple(cfg.INPUT.SIZE_TEST))
    enabled = [k for k in _UNSUPPORTED if k in cfg.INPUT and cfg.INPUT[k].ENABLED]
    if enabled:
        raise ValueError(
            f"INPUT.{enabled[0]}.ENABLED is not supported by the video clip transforms "
            f"(supported: SIZE_TRAIN, PADDING, FLIP, REA, VIDEO.FRAME_ERASE)"
        )
    v = cfg.INPUT.VIDEO
    return ClipTrainTransform(
        size=tuple(cfg.INPUT.SIZE_TRAIN),
        padding=cfg.INPUT.PADDING.SIZE if cfg.INPUT.PADDING.ENABLED else 0,
        pad_mode=cfg.INPUT.PADDING.MODE,
        flip_prob=cfg.INPUT.FLIP.PROB if cfg.INPUT.FLIP.ENABLED else 0.0,
        rea_prob=cfg.INPUT.REA.PROB if cfg.INPUT.REA.ENABLED else 0.0,
        rea_value=tuple(cfg.INPUT.REA.VALUE),
        frame_erase_prob=v.FRAME_ERASE.PROB if v.FRAME_ERASE.ENABLED else 0.0,
        granularity=v.AUG_GRANULARITY,
        rea_spare_one=v.REA_SPARE_ONE,
    )
