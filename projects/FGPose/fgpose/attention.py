"""FGPose's motion-attentive local dynamic pose stream (section 4.2, Fig. 5, Eq. (1)-(3)).

RNN-mask network: per level ``i`` a conv ``phi_i`` (3x3 conv + BN + ReLU, then resized to one
common grid, the level-3 map size: "convolution to normalise the size of motion features"),
then a recurrent unit over the levels, fine to coarse:

    m_i = R_i(phi(f_mi), h_{i-1})                  Eq. (1)
    m'_i = alpha * m_i + (1 - alpha) * m_f          Eq. (2)   (m_f: the last mask produced)
    f_i = s(m'_i) (x) f_gi                          Eq. (3)   (s: bilinear upsampling)

then ``o_i = GAP(f_i)``, concatenated over the levels. The paper calls ``R`` an LSTM without
its form; ours is a ConvLSTM cell (3x3 conv gates, shared over the levels, so ``R_i`` differ
only by their input) whose hidden state gives the mask ``m_i = sigmoid(conv1x1(h_i))`` in
``[0, 1]``. Levels not in ``levels`` (Tables 5 and 6) are pooled unmasked; with no level
(Table 5, k = 0) no mask network is built (its parameters would feed no loss). Switches:
``order="coarse_to_fine"`` runs the recurrence from the deepest level (Table 7);
``net="cnn"`` computes each mask from its own level with two convs, no recurrence (Table 8,
"CNN-guided"); the input maps are the motion maps or, for "appearance-guided" attentions
(Table 8), the global appearance maps (the caller decides).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvLSTMCell", "refine_masks", "apply_masks", "MotionAttention"]


class ConvLSTMCell(nn.Module):
    """``(x (B, Cx, h, w), (h, c))`` -> ``(h', c')``; gates from one 3x3 conv on ``[x, h]``."""

    def __init__(self, in_channels: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(in_channels + hidden, 4 * hidden, 3, padding=1)

    def forward(self, x: torch.Tensor, state: Optional[Tuple[torch.Tensor, torch.Tensor]] = None):
        if state is None:
            z = x.new_zeros(x.shape[0], self.hidden, x.shape[2], x.shape[3])
            state = (z, z)
        h, c = state
        i, f, o, g = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


def refine_masks(masks: Sequence[torch.Tensor], alpha: float) -> List[torch.Tensor]:
    """Eq. (2): ``m'_i = alpha * m_i + (1 - alpha) * m_f`` with ``m_f = masks[-1]`` (the last
    mask the network produced); values stay in ``[0, 1]`` when the masks are."""
    m_f = masks[-1]
    return [alpha * m + (1.0 - alpha) * m_f for m in masks]


def apply_masks(masks: Sequence[torch.Tensor], maps: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """Eq. (3): ``f_i = s(m'_i) (x) f_gi``: each ``(B, 1, h, w)`` mask upsampled (bilinear) to
    its map's size and multiplied into every channel of the ``(B, C_i, H_i, W_i)`` map."""
    out = []
    for m, f in zip(masks, maps):
        if m.shape[-2:] != f.shape[-2:]:
            m = F.interpolate(m, size=f.shape[-2:], mode="bilinear", align_corners=False)
        out.append(m * f)
    return out


def _resize(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class MotionAttention(nn.Module):
    """Args:
        guide_channels: channels of each level's guiding map (motion or appearance), levels 1..n.
        grid: the common mask grid ``(h, w)``.
        levels: 1-based levels that get a mask (others pooled unmasked).
        alpha: Eq. (2).
        order: ``fine_to_coarse`` | ``coarse_to_fine``; net: ``rnn`` | ``cnn`` (validated values:
            ``MODEL.FGPOSE.ATTENTION_ORDER`` / ``ATTENTION_NET``, :func:`fgpose.config.validate_fgpose_config`).
    """

    def __init__(self, guide_channels: Sequence[int], grid: Tuple[int, int], levels: Sequence[int],
                 alpha: float = 0.2, order: str = "fine_to_coarse", net: str = "rnn", hidden: int = 64):
        super().__init__()
        n = len(guide_channels)
        levels = [int(v) for v in levels]
        if any(not 1 <= v <= n for v in levels) or len(set(levels)) != len(levels):
            raise ValueError(f"attention levels must be distinct values in 1..{n}, got {levels}")
        self.grid = (int(grid[0]), int(grid[1]))
        self.levels = sorted(levels, reverse=(order == "coarse_to_fine"))
        self.alpha = float(alpha)
        self.net = net
        self.phi = nn.ModuleDict({
            str(v): nn.Sequential(nn.Conv2d(guide_channels[v - 1], hidden, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(hidden), nn.ReLU(inplace=True))
            for v in levels})
        if net == "rnn" and levels:  # no masked level (Table 5, k = 0): no recurrence to build
            self.cell = ConvLSTMCell(hidden, hidden)
            self.to_mask = nn.Conv2d(hidden, 1, 1)
        elif net == "cnn":
            self.to_mask_cnn = nn.ModuleDict({
                str(v): nn.Sequential(nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(inplace=True),
                                      nn.Conv2d(hidden, 1, 1)) for v in levels})
        self.last_masks: Dict[int, torch.Tensor] = {}

    def masks(self, guides: Sequence[torch.Tensor]) -> Dict[int, torch.Tensor]:
        """Refined masks ``m'_i`` ``(B, 1, h, w)`` on the common grid, keyed by level."""
        raw = []
        state = None
        for v in self.levels:  # Eq. (1), in the recurrence order
            x = _resize(self.phi[str(v)](guides[v - 1]), self.grid)
            if self.net == "rnn":
                state = self.cell(x, state)
                raw.append(torch.sigmoid(self.to_mask(state[0])))
            else:
                raw.append(torch.sigmoid(self.to_mask_cnn[str(v)](x)))
        if not raw:
            return {}
        return dict(zip(self.levels, refine_masks(raw, self.alpha)))  # Eq. (2)

    def forward(self, guides: Sequence[torch.Tensor], global_maps: Sequence[torch.Tensor]) -> torch.Tensor:
        """``guides``, ``global_maps``: per level ``(B, C, h_i, w_i)`` (time-averaged) ->
        ``(B, sum_i C_gi)``: the concatenated ``o_i``."""
        masks = self.masks(guides) if self.levels else {}
        self.last_masks = {k: m.detach() for k, m in masks.items()}
        feats = []
        for i, f in enumerate(global_maps, start=1):
            if i in masks:
                f = apply_masks([masks[i]], [f])[0]  # Eq. (3)
            feats.append(f.mean(dim=(2, 3)))
        return torch.cat(feats, dim=1)
