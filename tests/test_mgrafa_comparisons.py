"""Comparison rows of the MG-RAFA paper: NL(S) / NL(ST) (Table 4: non-local refinement, then the
spatio-temporal average) and RGA-SC (MG) (Table 5: relation-aware gates per group, then the
average)."""
import pytest
import torch

import fastreid_ext  # noqa: F401
from mgrafa.aggregation import MultiGranularityAggregation
from mgrafa.comparisons import NonLocalRefine, RGAGate

B, T, C, H, W = 2, 3, 16, 8, 4


def clip(seed=0):
    return torch.randn(B, T, C, H, W, generator=torch.Generator().manual_seed(seed))


def live(block):
    """Move the zero-initialised output BN away from the identity start."""
    torch.manual_seed(3)
    with torch.no_grad():
        block.w_z[1].weight.uniform_(0.5, 1.5)
    return block.eval()


@pytest.mark.parametrize("attention", ["nl_s", "nl_st"])
def test_non_local_rows_start_as_the_average_baseline(attention):
    agg = MultiGranularityAggregation(C, (H, W), num_frames=T, attention=attention).eval()
    x = clip()
    with torch.no_grad():
        v = agg(x).features
    assert agg.num_groups == 1
    assert torch.allclose(v, x.mean(dim=(1, 3, 4)), atol=1e-6)


def test_nl_s_stays_within_each_frame_and_nl_st_does_not():
    x = clip()
    y = x.clone()
    y[:, 1] += torch.randn(B, C, H, W)  # change frame 1 only
    nl_s, nl_st = live(NonLocalRefine(C, "spatial")), live(NonLocalRefine(C, "spatiotemporal"))
    with torch.no_grad():
        s_x, s_y, st_x, st_y = nl_s(x), nl_s(y), nl_st(x), nl_st(y)
    assert torch.allclose(s_x[:, 0], s_y[:, 0], atol=1e-6) and torch.allclose(s_x[:, 2], s_y[:, 2], atol=1e-6)
    assert not torch.allclose(st_x[:, 0], st_y[:, 0], atol=1e-4)


def test_nl_matches_the_embedded_gaussian_equation():
    nl = live(NonLocalRefine(C, "spatiotemporal"))
    x = clip().double()
    nl = nl.double()
    nodes = x.permute(0, 2, 1, 3, 4).reshape(B, C, -1)  # (B, C, K)
    with torch.no_grad():
        q = torch.einsum("oc,bck->bok", nl.theta.weight[..., 0], nodes) + nl.theta.bias[:, None]
        k = torch.einsum("oc,bck->bok", nl.phi.weight[..., 0], nodes) + nl.phi.bias[:, None]
        g = torch.einsum("oc,bck->bok", nl.g.weight[..., 0], nodes) + nl.g.bias[:, None]
        att = torch.softmax(torch.einsum("bci,bcj->bij", q, k), dim=-1)  # (B, K, K) over j
        y = torch.einsum("bij,bcj->bci", att, g)
        bn = nl.w_z[1]
        z = torch.einsum("oc,bck->bok", nl.w_z[0].weight[..., 0], y)
        z = (z - bn.running_mean[:, None]) / torch.sqrt(bn.running_var[:, None] + bn.eps) * bn.weight[:, None] \
            + bn.bias[:, None]
        ref = (nodes + z).reshape(B, C, T, H, W).permute(0, 2, 1, 3, 4)
        out = nl(x)
    assert torch.allclose(out, ref, atol=1e-9)


def test_rga_sc_mg_is_a_per_frame_gated_average():
    agg = MultiGranularityAggregation(C, (H, W), num_frames=T, attention="rga_sc", num_groups=4,
                                      reduction=4).eval()
    x = clip()
    with torch.no_grad():
        out = agg(x)
        perm = agg(x[:, [2, 0, 1]]).features
    assert out.features.shape == (B, C) and agg.num_groups == 4
    assert [tuple(w.shape[-2:]) for w in out.node_weights] == [(8, 4), (4, 2), (2, 1), (1, 1)]
    assert torch.allclose(perm, out.features, atol=1e-5)  # per-frame gates, then the average
    k = [T * h * w for h, w in agg.sizes]
    for w, kk in zip(out.node_weights, k):  # weights = gate / K, gate in (0, 1)
        assert bool(((w > 0) & (w < 1.0 / kk)).all())


def test_rga_gate_spatial_then_channel():
    gate = RGAGate(C, (H, W), reduction=4).eval()
    x = clip()
    with torch.no_grad():
        g = gate(x)
        f = x.reshape(B * T, C, H * W, 1)
        g_s = gate.spatial(f)
        g_c = gate.channel((f * g_s).transpose(1, 2))
    assert torch.allclose(g, (g_s.reshape(B * T, 1, H * W, 1) * g_c.reshape(B * T, C, 1, 1)).reshape(B, T, C, H, W))
    with pytest.raises(ValueError, match="built for"):
        gate(torch.randn(B, T, C, H // 2, W))
