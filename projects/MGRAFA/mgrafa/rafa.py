"""Reference-aided attention of one channel group (the MG-RAFA paper, section 3.2, Eq. (1)-(3)).

The modules map a node set ``(B, C, K)`` (and its reference set ``(B, C, D)``) to attention
*scores* ``(B, C, K)``; :func:`mgrafa.nodes.softmax_aggregate` normalises them over the nodes
and aggregates (Eq. (4)).
"""
from __future__ import annotations

import torch
from torch import nn

from .nodes import relation_vectors

#: ``MODEL.MGRAFA.ATT_INIT`` values
ATTENTION_INITS = ("uniform", "near_uniform", "random")

#: theta's BN gamma of the ``near_uniform`` start
NEAR_UNIFORM_GAMMA = 0.1


def init_uniform_start(theta: "ConvBNReLU", offset: float = 1.0, gamma: float = 0.0) -> None:
    """Start the attention at the average baseline: theta's BN gets gamma 0 and beta ``offset``
    > 0, so every score is ``ReLU(offset) = offset`` whatever the input, the softmax of Eq. (4)
    is uniform over the nodes (``v`` = the spatio-temporal mean) and, the ReLU being active, the
    gradient reaches gamma from the first step. (With the default gamma 1 / beta 0 the scores
    start far from uniform and about half of them are exactly 0, with no gradient.)

    ``gamma > 0`` (the ``near_uniform`` start, gamma 0.1): the scores start at ``offset +
    gamma * xhat`` with ``xhat`` ~ N(0, 1) after BN, so the softmax starts within about
    ``exp(+-gamma)`` of uniform and the ReLU stays active (``offset`` >> ``gamma``); unlike gamma 0,
    every layer of the attention (theta's conv, phi, psi, mu, nu) gets a gradient from the
    first step. That matters with Adam, which moves a parameter by about the learning rate per
    step whatever its gradient's scale: from gamma 0 only gamma moves at first and the rest waits
    for it (measured in the README: still uniform after 280 iterations)."""
    if gamma < 0:
        raise ValueError(f"the start's gamma must be >= 0, got {gamma}")
    bn = theta[1]
    nn.init.constant_(bn.weight, float(gamma))
    nn.init.constant_(bn.bias, float(offset))


def apply_init(theta: "ConvBNReLU", init: str) -> None:
    """``MODEL.MGRAFA.ATT_INIT`` on theta: ``uniform`` (gamma 0), ``near_uniform`` (gamma
    :data:`NEAR_UNIFORM_GAMMA`) or ``random`` (the BN defaults, left as they are); a validated
    value (:func:`mgrafa.config.validate_mgrafa_config`)."""
    if init == "uniform":
        init_uniform_start(theta)
    elif init == "near_uniform":
        init_uniform_start(theta, gamma=NEAR_UNIFORM_GAMMA)


def reduced(dim: int, reduction: int) -> int:
    """``dim / s`` rounded down, at least 1 (coarse granularities have very few nodes);
    ``reduction >= 1`` (validated: :func:`mgrafa.config.validate_mgrafa_config`)."""
    return max(1, dim // reduction)


class ConvBNReLU(nn.Sequential):
    """``ReLU(BN(W x))`` on node sets ``(B, C_in, K) -> (B, C_out, K)``: the 1x1 convolution +
    BN + ReLU the paper uses for every embedding (mu, nu, phi, psi, theta)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv1d(in_channels, out_channels, kernel_size=1, bias=False),
            nn.BatchNorm1d(out_channels),
            nn.ReLU(inplace=True),
        )
        nn.init.kaiming_normal_(self[0].weight, mode="fan_out", nonlinearity="relu")


class ScoreModule(nn.Module):
    """Base of the attention-score modules: their scores end in ``theta`` = ConvBNReLU."""

    theta: "ConvBNReLU"

    def no_weight_decay_params(self):
        """theta's BN bias: a per-channel offset of the scores, which the softmax of Eq. (4)
        ignores (no loss gradient while the ReLU is active); it only keeps the ReLU active, so
        weight decay would be the only force on it and, under Adam + L2, would move it towards
        0 (and the scores into the dead ReLU) by about the learning rate per step. Read by the
        trainer (``fastreid_ext.engine.param_groups.no_weight_decay_ids``)."""
        return [self.theta[1].bias]


class ReferenceAidedAttention(ScoreModule):
    """Attention scores of Eq. (3), ``a_i = theta([phi(x_i), psi(r_i)])``.

    - Eq. (1): ``r_ij = mu(x_i)^T nu(y_j)`` with ``mu, nu: C -> C/s``;
    - Eq. (2): ``r_i = [r_i1 .. r_iD]``;
    - Eq. (3): ``phi: C -> C/s``, ``psi: D -> D/s``, ``theta: C/s + D/s -> C``.

    Args:
        channels: ``C`` of the group.
        num_ref_nodes: ``D``, the number of reference nodes (fixed: ``psi`` is a learned
            ``D -> D/s`` map, so the relation vector length must not change).
        reduction: ``s``.
    """

    def __init__(self, channels: int, num_ref_nodes: int, reduction: int = 8, init: str = "uniform"):
        super().__init__()
        c_s, d_s = reduced(channels, reduction), reduced(num_ref_nodes, reduction)
        self.num_ref_nodes = num_ref_nodes
        self.mu = ConvBNReLU(channels, c_s)
        self.nu = ConvBNReLU(channels, c_s)
        self.phi = ConvBNReLU(channels, c_s)
        self.psi = ConvBNReLU(num_ref_nodes, d_s)
        self.theta = ConvBNReLU(c_s + d_s, channels)
        apply_init(self.theta, init)

    def forward(self, nodes: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """``nodes`` ``(B, C, K)``, ``reference`` ``(B, C, D)`` -> scores ``(B, C, K)``."""
        if reference.shape[-1] != self.num_ref_nodes:
            raise ValueError(
                f"the module was built for D={self.num_ref_nodes} reference nodes, got "
                f"{reference.shape[-1]} (input size or T differs from the config?)"
            )
        relations = relation_vectors(self.mu(nodes), self.nu(reference))  # (B, D, K)
        joint = torch.cat([self.phi(nodes), self.psi(relations)], dim=1)  # (B, C/s + D/s, K)
        return self.theta(joint)  # (B, C, K)


class AppearanceAttention(ScoreModule):
    """MG-AFA of Table 2: attention inferred from the appearance alone, ``a_i = theta(phi(x_i))``
    (Eq. (3) without the relation branch; no reference set is used)."""

    num_ref_nodes = 0

    def __init__(self, channels: int, reduction: int = 8, init: str = "uniform"):
        super().__init__()
        c_s = reduced(channels, reduction)
        self.phi = ConvBNReLU(channels, c_s)
        self.theta = ConvBNReLU(c_s, channels)
        apply_init(self.theta, init)

    def forward(self, nodes: torch.Tensor, reference: torch.Tensor = None) -> torch.Tensor:
        """``nodes`` ``(B, C, K)`` -> scores ``(B, C, K)``; ``reference`` is ignored."""
        return self.theta(self.phi(nodes))
