"""Body-region priors of MGRe (Table 1) and the COCO joints of each region.

Table 1 gives, per region, the stage it is located on, the predefined centre ``(C_x, C_y)``
(scaled to (0, 1)) and the size ``N x M`` (height x width) of the sampled feature map, for
256x128 inputs (section 4.2). The paper states neither the joints of each region nor the prior
box size; our choices (documented in the project README):

- prior box size = the sampled size in stage-map pixels at the reference input, i.e. with zero
  offsets and the prior size the sampling module reads an exact ``N x M`` crop of the map
  (normalised width ``M * stride / 128``, height ``N * stride / 256``);
- joints (COCO order: 0 nose, 1-4 eyes / ears, 5/6 shoulders, 7/8 elbows, 9/10 wrists,
  11/12 hips, 13/14 knees, 15/16 ankles): head 0-4; half left torso 5, 7, 11 (the person's
  left shoulder, elbow, hip); half right torso 6, 8, 12; legs 11-16; upper body 0-12;
  lower body 11-16; whole body 0-16.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

__all__ = ["Region", "TABLE1_REGIONS", "STAGE_STRIDES", "regions_of_stage", "scaled_size",
           "prior_box_size"]


@dataclass(frozen=True)
class Region:
    """One row of Table 1 (sizes at the 256x128 reference input)."""

    name: str
    stage: int
    cx: float
    cy: float
    height: int  # N
    width: int   # M
    joints: Tuple[int, ...]


TABLE1_REGIONS: Tuple[Region, ...] = (
    Region("head", 1, 1 / 2, 1 / 12, 8, 8, (0, 1, 2, 3, 4)),
    Region("left_torso", 1, 1 / 2, 1 / 3, 32, 16, (5, 7, 11)),
    Region("right_torso", 1, 1 / 2, 1 / 3, 32, 16, (6, 8, 12)),
    Region("legs", 1, 1 / 2, 3 / 4, 24, 32, (11, 12, 13, 14, 15, 16)),
    Region("upper_body", 2, 1 / 2, 1 / 3, 16, 16, tuple(range(13))),
    Region("lower_body", 2, 1 / 2, 3 / 4, 16, 16, (11, 12, 13, 14, 15, 16)),
    Region("whole_body", 3, 1 / 2, 1 / 2, 16, 8, tuple(range(17))),
)

#: input pixels per stage-map pixel of a ResNet (stage 4 with last stride 1 keeps 16)
STAGE_STRIDES: Dict[int, int] = {1: 4, 2: 8, 3: 16}

#: the input size Table 1's sampled sizes refer to (paper section 4.2)
REFERENCE_INPUT: Tuple[int, int] = (256, 128)


def regions_of_stage(stage: int, regions: Sequence[Region] = TABLE1_REGIONS) -> List[Region]:
    """The Table 1 regions located after residual block ``stage`` (1, 2 or 3)."""
    out = [r for r in regions if r.stage == stage]
    if not out:
        raise ValueError(f"no MGRe region is located on stage {stage}; stages are 1, 2, 3")
    return out


def scaled_size(region: Region, input_size: Sequence[int],
                reference: Sequence[int] = REFERENCE_INPUT, stride_ratio: float = 1.0) -> Tuple[int, int]:
    """Sampled ``(N, M)`` for ``input_size = (H, W)``: Table 1's size scaled by ``H / 256`` and
    ``W / 128`` (rounded, at least 1), divided by ``stride_ratio`` (the stride of the map it
    is sampled from over the Table 1 stage stride; 4 when every region is sampled from the
    stage-4 map in the single-grained-features ablation)."""
    h = max(1, int(round(region.height * input_size[0] / reference[0] / stride_ratio)))
    w = max(1, int(round(region.width * input_size[1] / reference[1] / stride_ratio)))
    return h, w


def prior_box_size(region: Region, reference: Sequence[int] = REFERENCE_INPUT) -> Tuple[float, float]:
    """Prior ``(l1, l2)`` = (width, height) as fractions of the map: the sampled size in
    stage-map pixels at the reference input (so the prior box is an exact crop)."""
    stride = STAGE_STRIDES[region.stage]
    return region.width * stride / reference[1], region.height * stride / reference[0]
