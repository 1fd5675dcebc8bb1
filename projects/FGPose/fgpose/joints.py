"""Pose joints -> part boxes -> part images for FGPose's joint-specific stream (section 4.2).

The paper locates 16 joints with OpenPose (head, neck, left eye, right eye, right shoulder,
right elbow, right wrist, left shoulder, left elbow, left wrist, left hip, left knee, left ankle,
right hip, right knee, right ankle) and crops four part images: head, body (torso), hands (left
arm and right arm side by side) and legs (lower body). Our keypoints are COCO-17
(``keypoints`` ``(B, T, 17, 3)``, ``x, y`` in ``[0, 1]`` of the frame, ``v`` 1 visible / 0 not).

COCO-17 -> the paper's 16 joints (:func:`paper16_from_coco`; our choice, the paper is silent):

* ``head`` = the nose when visible, else the mean of the visible ears (OpenPose's "head"
  point of the COCO model is the nose);
* ``neck`` = the midpoint of the shoulders (OpenPose's neck), visible iff both are;
* the eyes, shoulders, elbows, wrists, hips, knees and ankles are COCO's joints of the same
  name; the ears are used only through ``head``.

Part boxes (:func:`part_boxes`, our choice): the box of the part's visible joints, grown by
``margin`` (fraction of the frame height; width margins scaled by the frame's aspect) on every
side and to at least the part's minimum size; a part with no visible joint uses its prior box
(:data:`PARTS`). Boxes are ``(cx, cy, w, h)`` in ``[0, 1]`` of the frame; crops are bilinear
(``grid_sample``; outside the frame reads zeros).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F

__all__ = ["PAPER_JOINTS", "COCO_TO_PAPER", "PARTS", "Part", "paper16_from_coco", "part_boxes",
           "crop_boxes", "part_images"]

PAPER_JOINTS: Tuple[str, ...] = (
    "head", "neck", "left_eye", "right_eye", "right_shoulder", "right_elbow", "right_wrist",
    "left_shoulder", "left_elbow", "left_wrist", "left_hip", "left_knee", "left_ankle",
    "right_hip", "right_knee", "right_ankle",
)
# COCO indices: 0 nose, 1 l_eye, 2 r_eye, 3 l_ear, 4 r_ear, 5 l_sho, 6 r_sho, 7 l_elb, 8 r_elb,
# 9 l_wri, 10 r_wri, 11 l_hip, 12 r_hip, 13 l_knee, 14 r_knee, 15 l_ank, 16 r_ank
#: paper joint -> COCO joint for the joints copied as they are (head and neck are derived)
COCO_TO_PAPER: Dict[str, int] = {
    "left_eye": 1, "right_eye": 2, "right_shoulder": 6, "right_elbow": 8, "right_wrist": 10,
    "left_shoulder": 5, "left_elbow": 7, "left_wrist": 9, "left_hip": 11, "left_knee": 13,
    "left_ankle": 15, "right_hip": 12, "right_knee": 14, "right_ankle": 16,
}


@dataclass(frozen=True)
class Part:
    """A part box: the joints it covers, its minimum size and its prior box (no visible joint);
    sizes are fractions of the frame's width / height."""

    name: str
    joints: Tuple[str, ...]
    min_w: float
    min_h: float
    prior: Tuple[float, float, float, float]  # cx, cy, w, h


#: the five boxes; ``left_arm`` and ``right_arm`` make the paper's "hands" part image together
PARTS: Tuple[Part, ...] = (
    Part("head", ("head", "neck", "left_eye", "right_eye"), 0.35, 0.16, (0.5, 0.1, 0.45, 0.2)),
    Part("body", ("neck", "left_shoulder", "right_shoulder", "left_hip", "right_hip"), 0.4, 0.3,
         (0.5, 0.38, 0.6, 0.36)),
    Part("left_arm", ("left_shoulder", "left_elbow", "left_wrist"), 0.2, 0.25, (0.65, 0.4, 0.35, 0.35)),
    Part("right_arm", ("right_shoulder", "right_elbow", "right_wrist"), 0.2, 0.25, (0.35, 0.4, 0.35, 0.35)),
    Part("legs", ("left_hip", "left_knee", "left_ankle", "right_hip", "right_knee", "right_ankle"), 0.4, 0.35,
         (0.5, 0.75, 0.7, 0.5)),
)


def paper16_from_coco(kp: torch.Tensor) -> torch.Tensor:
    """``(..., 17, 3)`` COCO keypoints -> ``(..., 16, 3)`` in :data:`PAPER_JOINTS` order (module
    docstring); a derived joint with no visible source is ``(0, 0, 0)``."""
    if kp.shape[-2:] != (17, 3):
        raise ValueError(f"COCO keypoints must be (..., 17, 3), got {tuple(kp.shape)}")
    vis = (kp[..., 2] > 0).to(kp.dtype)  # (..., 17)
    xy = kp[..., :2]

    def mean_of(idx: Sequence[int]):
        w = vis[..., list(idx)]  # (..., k)
        n = w.sum(-1, keepdim=True)
        p = (xy[..., list(idx), :] * w.unsqueeze(-1)).sum(-2) / n.clamp_min(1.0)
        return p, (n > 0).to(kp.dtype)

    ears, ears_v = mean_of([3, 4])
    nose_v = vis[..., 0:1]
    head = torch.where(nose_v > 0, xy[..., 0, :], ears)
    head_v = torch.clamp(nose_v + ears_v, max=1.0)
    both = vis[..., 5:6] * vis[..., 6:7]
    neck = (xy[..., 5, :] + xy[..., 6, :]) / 2 * both
    out = []
    for name in PAPER_JOINTS:
        if name == "head":
            out.append(torch.cat([head * head_v, head_v], -1))
        elif name == "neck":
            out.append(torch.cat([neck, both], -1))
        else:
            out.append(kp[..., COCO_TO_PAPER[name], :])
    return torch.stack(out, dim=-2)


def part_boxes(joints16: torch.Tensor, frame_hw: Tuple[int, int], margin: float = 0.04,
               parts: Sequence[Part] = PARTS) -> torch.Tensor:
    """``(N, 16, 3)`` joints (``[0, 1]`` coordinates) -> ``(N, P, 4)`` boxes ``(cx, cy, w, h)``.

    Box of the part's visible joints + ``margin`` (fraction of the frame height; the width
    margin is ``margin * H / W`` so it is the same number of pixels), at least the part's
    minimum size, centred on the joints; the prior box when no joint of the part is visible.
    """
    if joints16.dim() != 3 or joints16.shape[1:] != (16, 3):
        raise ValueError(f"joints must be (N, 16, 3), got {tuple(joints16.shape)}")
    H, W = frame_hw
    mx, my = margin * H / W, margin
    boxes = []
    for part in parts:
        idx = [PAPER_JOINTS.index(j) for j in part.joints]
        sel = joints16[:, idx]  # (N, k, 3)
        vis = sel[..., 2] > 0
        any_v = vis.any(1)
        big = torch.finfo(sel.dtype).max
        x0 = torch.where(vis, sel[..., 0], big).amin(1)
        x1 = torch.where(vis, sel[..., 0], -big).amax(1)
        y0 = torch.where(vis, sel[..., 1], big).amin(1)
        y1 = torch.where(vis, sel[..., 1], -big).amax(1)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        w = torch.clamp(x1 - x0 + 2 * mx, min=part.min_w)
        h = torch.clamp(y1 - y0 + 2 * my, min=part.min_h)
        prior = joints16.new_tensor(part.prior).expand(joints16.shape[0], 4)
        box = torch.stack([cx, cy, w, h], -1)
        boxes.append(torch.where(any_v[:, None], box, prior))
    return torch.stack(boxes, 1)


def crop_boxes(frames: torch.Tensor, boxes: torch.Tensor, out_hw: Tuple[int, int]) -> torch.Tensor:
    """Bilinear crops: ``frames`` ``(N, C, H, W)``, ``boxes`` ``(N, 4)`` ``(cx, cy, w, h)`` in
    ``[0, 1]`` -> ``(N, C, out_h, out_w)``. Output pixel centres sample the box uniformly
    (``align_corners=False``): output pixel ``(i, j)`` reads frame point
    ``x = cx + w * ((j + 0.5) / out_w - 0.5)``, ``y`` likewise."""
    n = frames.shape[0]
    cx, cy, w, h = boxes.unbind(-1)
    theta = torch.zeros(n, 2, 3, dtype=frames.dtype, device=frames.device)
    theta[:, 0, 0] = w
    theta[:, 0, 2] = 2 * cx - 1
    theta[:, 1, 1] = h
    theta[:, 1, 2] = 2 * cy - 1
    grid = F.affine_grid(theta, [n, frames.shape[1], int(out_hw[0]), int(out_hw[1])], align_corners=False)
    return F.grid_sample(frames, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def part_images(frames: torch.Tensor, keypoints: torch.Tensor, size: int, margin: float = 0.04
                ) -> Tuple[List[torch.Tensor], torch.Tensor]:
    """The four part images of the paper from ``frames`` ``(N, C, H, W)`` and COCO
    ``keypoints`` ``(N, 17, 3)``: ``[head, body, hands, legs]``, each ``(N, C, size, size)``
    (hands = left arm | right arm, each ``size x size // 2``, side by side), and the five
    boxes ``(N, 5, 4)`` (:data:`PARTS` order)."""
    boxes = part_boxes(paper16_from_coco(keypoints), tuple(frames.shape[-2:]), margin)
    crops = {p.name: None for p in PARTS}
    for k, part in enumerate(PARTS):
        hw = (size, size // 2) if part.name.endswith("_arm") else (size, size)
        crops[part.name] = crop_boxes(frames, boxes[:, k], hw)
    hands = torch.cat([crops["left_arm"], crops["right_arm"]], dim=-1)
    if hands.shape[-1] != size:  # odd size: pad the last column
        hands = F.pad(hands, (0, size - hands.shape[-1]))
    return [crops["head"], crops["body"], hands, crops["legs"]], boxes
