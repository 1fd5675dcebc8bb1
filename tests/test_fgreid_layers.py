"""FGReID's fine-grained attention (Eq. 1-3), attentive pooling (Eq. 10) and Q = K non-local
block (Eq. 5-9) against direct float64 transcriptions of the paper's equations."""
import math

import pytest
import torch

import fgreid  # noqa: F401
from fgreid.layers import (
    QKNonLocal,
    attentive_pooling,
    channel_weights,
    fine_grained_attention,
    shift_to_nonnegative,
)


def _eq1_to_3_loops(f, t, scope):
    """Eq. 1-3 written element by element (float64)."""
    n, c, h, w = f.shape
    out = torch.zeros(n, 1, h, w, dtype=torch.float64)
    for i in range(n):
        clip = i // t
        fmin = f.min() if scope == "batch" else f[clip * t:(clip + 1) * t].min()
        gap = [f[i, k].mean() for k in range(c)]
        z = sum(math.exp(g) for g in gap)
        s = [math.exp(g) / z for g in gap]  # Eq. 1
        for y in range(h):
            for x in range(w):
                acc = sum((f[i, k, y, x] - fmin) * s[k] for k in range(c))  # Eq. 2-3
                out[i, 0, y, x] = 1.0 / (1.0 + math.exp(-acc))
    return out


@pytest.mark.parametrize("scope", ["clip", "batch"])
def test_fine_grained_attention_matches_equations(scope):
    torch.manual_seed(0)
    t = 2
    f = torch.randn(3 * t, 5, 3, 2, dtype=torch.float64) * 2 + torch.arange(3 * t, dtype=torch.float64).view(-1, 1, 1, 1)
    s = channel_weights(f.mean(dim=(2, 3)))
    got = fine_grained_attention(f, s, t, scope)
    torch.testing.assert_close(got, _eq1_to_3_loops(f, t, scope))
    assert got.shape == (3 * t, 1, 3, 2)


def test_min_scopes_differ_and_clip_scope_is_batch_independent():
    torch.manual_seed(1)
    f = torch.randn(4, 3, 2, 2, dtype=torch.float64)
    f[2:] -= 10.0  # the second clip holds the batch minimum
    s = channel_weights(f.mean(dim=(2, 3)))
    alone = fine_grained_attention(f[:2], s[:2], 2, "clip")
    torch.testing.assert_close(fine_grained_attention(f, s, 2, "clip")[:2], alone)
    assert not torch.allclose(fine_grained_attention(f, s, 2, "batch")[:2], alone)
    assert shift_to_nonnegative(f, 2, "clip").min() == 0
    with pytest.raises(ValueError, match="min scope"):
        shift_to_nonnegative(f, 2, "frame")
    with pytest.raises(ValueError, match="multiple"):
        shift_to_nonnegative(f, 3, "clip")


def test_channel_weights_is_softmax_over_channels():
    a = torch.tensor([[0.0, math.log(3.0)]], dtype=torch.float64)
    torch.testing.assert_close(channel_weights(a), torch.tensor([[0.25, 0.75]], dtype=torch.float64))


def test_attentive_pooling_matches_eq10():
    torch.manual_seed(2)
    a2 = torch.randn(3, 4, 2, 3, dtype=torch.float64)
    maps = torch.rand(3, 1, 2, 3, dtype=torch.float64) + 0.5
    want = torch.zeros(3, 4, dtype=torch.float64)
    for i in range(3):
        denom = sum(maps[i, 0, y, x] for y in range(2) for x in range(3))
        for k in range(4):
            want[i, k] = sum(a2[i, k, y, x] for y in range(2) for x in range(3)) / denom
    torch.testing.assert_close(attentive_pooling(a2, maps), want)
    with pytest.raises(ValueError):
        attentive_pooling(a2, maps[:, :, :1])


def test_non_local_is_identity_at_init_and_rows_sum_to_one():
    torch.manual_seed(3)
    block = QKNonLocal(8, reduction=4).double()
    a1 = torch.randn(2 * 3, 8, 2, 2, dtype=torch.float64)  # B = 2 clips of T = 3
    torch.testing.assert_close(block(a1, 3), a1)
    w = block.affinity(a1, 3)
    assert w.shape == (2, 3 * 2 * 2, 3 * 2 * 2)
    torch.testing.assert_close(w.sum(dim=-1), torch.ones(2, 12, dtype=torch.float64))
    assert (w > 0).all()


def _non_local_loops(block, a1, t):
    """Eq. 5-9 position by position (float64)."""
    n, c, h, w = a1.shape
    b = n // t
    th = block.theta.weight[:, :, 0, 0]
    ph = th if block.phi is None else block.phi.weight[:, :, 0, 0]
    g = block.g.weight[:, :, 0, 0]
    wz = block.w_z.weight[:, :, 0, 0]
    out = a1.clone()
    for clip in range(b):
        pos = [(clip * t + f, y, x) for f in range(t) for y in range(h) for x in range(w)]
        vec = [a1[i, :, y, x] for (i, y, x) in pos]
        q = [torch.relu(th @ v) for v in vec]
        q = [u / u.norm().clamp(min=1e-12) for u in q]  # F.normalize's eps
        k = [torch.relu(ph @ v) for v in vec]
        k = [u / u.norm().clamp(min=1e-12) for u in k]
        val = [torch.relu(g @ v) for v in vec]
        for a, (i, y, x) in enumerate(pos):
            logits = torch.stack([q[a] @ k[j] for j in range(len(pos))])
            weights = torch.exp(logits) / torch.exp(logits).sum()
            v_avg = sum(weights[j] * val[j] for j in range(len(pos)))
            out[i, :, y, x] = wz @ v_avg + a1[i, :, y, x]
    return out


@pytest.mark.parametrize("shared_qk", [True, False])
def test_non_local_matches_equations(shared_qk):
    torch.manual_seed(4)
    block = QKNonLocal(8, reduction=2, shared_qk=shared_qk).double()
    torch.nn.init.normal_(block.w_z.weight)  # non-zero so the context term is checked
    a1 = torch.randn(2 * 2, 8, 2, 3, dtype=torch.float64)
    torch.testing.assert_close(block(a1, 2), _non_local_loops(block, a1, 2))
    assert (block.phi is None) == shared_qk
