"""FGReID's Table 8 ablation switches do what their names say (not only that they run):
each switched model's outputs are recomputed directly from its own sub-modules with the
component removed."""
import pytest
import torch
from test_fgreid_model import batch, tiny_cfg

from fastreid.modeling import build_model


def _build(**opts):
    cfg = tiny_cfg(**opts)
    cfg.MODEL.LOSSES.NAME = ("AveragedCrossEntropyLoss",)
    torch.manual_seed(0)
    m = build_model(cfg)
    with torch.no_grad():  # keep A_maps off the sigmoid's saturation, where every map is 1
        m.reduce_imagenet.weight.mul_(1e-2)
        m.reduce_imagenet.bias.zero_()
    m.eval()
    return m


def _frames(m, x):
    z = (x - m.pixel_mean.view(1, 1, 3, 1, 1)) / m.pixel_std.view(1, 1, 3, 1, 1)
    return z.flatten(0, 1)  # (B*T, 3, H, W)


def _clip_min(f, t):
    return f.reshape(f.shape[0] // t, -1).min(dim=1).values.repeat_interleave(t).view(-1, 1, 1, 1)


X = batch(b=2, t=2, h=64, w=32)["images"]  # 64 x 32 frames -> 4 x 2 maps


def test_without_s_channel_the_channel_weights_are_uniform():
    m = _build(S_CHANNEL=False)
    with torch.no_grad():
        f_in = m.reduce_imagenet(m.backbone_imagenet(_frames(m, X)))
        uniform = torch.sigmoid((f_in - _clip_min(f_in, 2)).mean(dim=1, keepdim=True))  # 1/c* each
        got = m.attention_maps(X).flatten(0, 1)[:, None]
        torch.testing.assert_close(got, uniform)
        # ... and they are not Eq. (1)'s softmax weights
        s = f_in.mean(dim=(2, 3)).softmax(dim=1)
        eq1 = torch.sigmoid(((f_in - _clip_min(f_in, 2)) * s[:, :, None, None]).sum(1, keepdim=True))
        assert (got - eq1).abs().max() > 1e-3


def test_without_fgm_the_attention_maps_are_one_and_pooling_is_a_spatial_mean():
    m = _build(FGM=False)
    with torch.no_grad():
        maps = m.attention_maps(X)
        assert torch.equal(maps, torch.ones_like(maps))
        with_fgm = _build().attention_maps(X)
        assert (with_fgm - 1).abs().max() > 1e-3
        frames = _frames(m, X)
        a1 = m.reduce_mars(m.backbone_mars(frames))  # A1 = f'_MARS * 1
        a3 = m.non_local(a1, 2).mean(dim=(2, 3))  # Eq. (10) with A_maps = 1: spatial mean
        context = m.bn_context(a3.view(2, 2, -1).mean(1))
        torch.testing.assert_close(m(X)[:, m.reduced_dim:], context)


def test_without_non_local_a2_is_a1():
    m = _build(NON_LOCAL=False)
    assert m.non_local is None
    with torch.no_grad():
        frames = _frames(m, X)
        maps = m.attention_maps(X).flatten(0, 1)[:, None]
        a1 = m.reduce_mars(m.backbone_mars(frames)) * maps
        a3 = a1.sum(dim=(2, 3)) / maps.sum(dim=(2, 3))
        torch.testing.assert_close(m(X)[:, m.reduced_dim:], m.bn_context(a3.view(2, 2, -1).mean(1)))


def test_kqv_uses_a_separate_key_and_qk_shares_it():
    shared, kqv = _build(), _build(SHARED_QK=False)
    with torch.no_grad():
        a1 = torch.rand(4, 16, 4, 2)
        for m in (shared, kqv):
            q = torch.nn.functional.normalize(
                torch.relu(m.non_local.theta(a1)).view(2, 2, 4, -1).permute(0, 1, 3, 2).reshape(2, -1, 4), dim=-1)
            same = torch.bmm(q, q.transpose(1, 2)).softmax(-1)
            assert torch.allclose(m.non_local.affinity(a1, 2), same) == (m.non_local.phi is None)


@pytest.mark.parametrize("branch", ["GFM", "CONTEXT"])
def test_one_branch_off_leaves_exactly_the_other_branch(branch):
    full, m = _build(), _build(**{branch: False})
    with torch.no_grad():
        frames = _frames(m, X)
        if branch == "CONTEXT":  # only GFM: f* = BN(mean_t GAP f'_ImageNet)
            gap = m.reduce_imagenet(m.backbone_imagenet(frames)).mean(dim=(2, 3))
            want = m.bn_global(gap.view(2, 2, -1).mean(1))
            assert m.backbone_mars is None and m.reduce_mars is None
        else:  # w/o GFM: f* = the context branch, the same as the full model's second half
            want = full(X)[:, full.reduced_dim:]
            assert m.bn_global is None
        torch.testing.assert_close(m(X), want)
    m.train()
    out = m.extract(X)
    assert ("y1" in out) == (branch != "GFM") and ("y2" in out) == (branch != "CONTEXT")


def test_shared_backbone_feeds_both_branches_from_one_resnet():
    m = _build(SHARED_BACKBONE=True)
    assert m.backbone_mars is None
    with torch.no_grad():
        frames = _frames(m, X)
        maps_in = m.backbone_imagenet(frames)
        f_in = m.reduce_imagenet(maps_in)
        s = f_in.mean(dim=(2, 3)).softmax(dim=1)
        a_maps = torch.sigmoid(((f_in - _clip_min(f_in, 2)) * s[:, :, None, None]).sum(1, keepdim=True))
        a2 = m.non_local(m.reduce_mars(maps_in) * a_maps, 2)  # the context branch reads CNN_ImageNet
        a3 = a2.sum(dim=(2, 3)) / a_maps.sum(dim=(2, 3))
        torch.testing.assert_close(m(X)[:, m.reduced_dim:], m.bn_context(a3.view(2, 2, -1).mean(1)))
