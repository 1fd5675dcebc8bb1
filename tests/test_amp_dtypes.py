"""Mixed precision on CPU: every registered loss and every meta-architecture with float16 and
bfloat16 inputs, under ``torch.autocast('cpu')`` and under an emulation of CUDA autocast's cast
policy.

CPU autocast keeps bfloat16 through ``pow``/``sum``/``exp``; CUDA autocast runs those in
float32 while ``matmul``/``linear``/``conv`` run in half. Code that mixes the two results
(``half.new_zeros(k).index_add(0, i, x.pow(2).sum(1))``) crashes only on the GPU. The
:class:`CudaAutocastPolicy` mode below applies CUDA's lists (``aten/src/ATen/autocast_mode.cpp``:
``lower_precision_fp`` and ``fp32`` ops, the ones these models use) on CPU tensors, so that
class of crash is caught here.
"""
import os

import pytest
import torch
from conftest import REPO, shipped_meta_architectures
from torch.overrides import TorchFunctionMode

from fastreid.utils.events import EventStorage
from fastreid_ext.config import build_config
from fastreid_ext.modeling.losses import build_losses
from fastreid_ext.modeling.losses.registry import known_losses

HALF = (torch.float16, torch.bfloat16)

# CUDA autocast: ops run in the lower precision / in float32 (autocast_mode.cpp)
_LOWER = {"conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "linear",
          "matmul", "__matmul__", "__rmatmul__", "mm", "bmm", "addmm", "addbmm", "baddbmm",
          "mv", "addmv", "einsum", "prelu", "chain_matmul"}
_FP32 = {"pow", "__pow__", "__rpow__", "__rtruediv__", "__rdiv__", "acos", "asin", "cosh",
         "erfinv", "exp", "expm1", "log", "log10", "log2", "log1p", "reciprocal", "rsqrt",
         "sinh", "tan", "softplus", "layer_norm", "group_norm", "norm", "cosine_similarity",
         "nll_loss", "kl_div", "l1_loss", "smooth_l1_loss", "mse_loss", "dist", "pdist", "cdist",
         "renorm", "logsumexp", "sum", "prod", "cumprod", "cumsum", "softmax", "log_softmax",
         "cross_entropy", "binary_cross_entropy_with_logits", "margin_ranking_loss",
         "soft_margin_loss", "triplet_margin_loss", "normalize"}


def _cast(x, dtype):
    if isinstance(x, torch.Tensor) and x.is_floating_point() and x.dtype != torch.float64:
        return x.to(dtype)
    if isinstance(x, (list, tuple)):
        return type(x)(_cast(v, dtype) for v in x)
    return x


class CudaAutocastPolicy(TorchFunctionMode):
    """CUDA autocast's casts on CPU ops: CPU autocast (same lower-precision list) plus CUDA's
    float32 list on top, only where autocast is enabled (a ``torch.autocast(..., enabled=False)``
    region inside is respected)."""

    def __init__(self, dtype):
        super().__init__()
        self.dtype = dtype
        self._autocast = torch.autocast("cpu", dtype=dtype)

    def __enter__(self):
        self._autocast.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        super().__exit__(*exc)
        return self._autocast.__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not torch.is_autocast_enabled("cpu"):
            return func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        target = self.dtype if name in _LOWER else torch.float32 if name in _FP32 else None
        if target is not None:
            args, kwargs = _cast(args, target), {k: _cast(v, target) for k, v in kwargs.items()}
        return func(*args, **kwargs)


def _mode(kind, dtype):
    if kind == "emulated_cuda":
        return CudaAutocastPolicy(dtype)
    return torch.autocast("cpu", dtype=dtype)


MODES = [("emulated_cuda", torch.float16), ("emulated_cuda", torch.bfloat16),
         ("cpu_autocast", torch.float16), ("cpu_autocast", torch.bfloat16)]
MODE_IDS = [f"{k}-{str(d).split('.')[-1]}" for k, d in MODES]


def test_the_emulation_reproduces_the_cuda_only_crash():
    x = torch.randn(6, 4).half()
    idx = torch.tensor([0, 0, 1, 1, 2, 2])
    x.new_zeros(3).index_add(0, idx, x.pow(2).sum(1))  # fine without it (and on CPU autocast)
    with CudaAutocastPolicy(torch.float16), pytest.raises(RuntimeError, match="same scalar type"):
        x.new_zeros(3).index_add(0, idx, x.pow(2).sum(1))


# ---------------------------------------------------------------- every registered loss
B, C, D, T = 8, 4, 16, 2


def _loss_cfg():
    cfg = build_config(freeze=False)
    cfg.MODEL.LOSSES.OSM.CL_CENTERS = True
    return cfg


def _outputs(dtype):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(B, C, generator=g) * 3
    scores = torch.rand(B, T, generator=g)
    out = {"cls_outputs": logits, "pred_class_logits": logits,
           "features": torch.randn(B, D, generator=g) * 2,
           "attention_scores": scores, "attention_weights": scores.softmax(1),
           "y1": torch.randn(B, C, generator=g) * 3, "y2": torch.randn(B, C, generator=g) * 3}
    out = {k: v.to(dtype) for k, v in out.items()}
    out["erased"] = torch.rand(B, T, generator=g) < 0.4
    return out


TARGETS = torch.arange(C).repeat_interleave(B // C)


def _build(name):
    torch.manual_seed(0)
    names = [name] if name != "OSMLoss" else ["CenterLoss", "OSMLoss"]  # CL centers
    return build_losses(_loss_cfg(), names=names, feat_dim=D, num_classes=C)


@pytest.mark.parametrize("name", known_losses())
@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("mode", [None, "emulated_cuda", "cpu_autocast"])
def test_every_loss_with_half_inputs_matches_float64_on_the_same_values(name, dtype, mode):
    losses = _build(name)
    half = _outputs(dtype)
    # reference: the same (rounded) values in float64, no autocast
    ref = build_losses(_loss_cfg(), names=list(losses.keys()), feat_dim=D, num_classes=C)
    ref.load_state_dict(losses.state_dict())
    ref = ref.double()
    with EventStorage():
        expected = ref({k: (v.double() if v.is_floating_point() else v) for k, v in half.items()}, TARGETS)
        if mode is None:
            got = losses(half, TARGETS)
        else:
            with _mode(mode, dtype):
                got = losses(half, TARGETS)
    assert got.keys() == expected.keys()
    for key in got:
        assert got[key].dtype == torch.float32, key
        assert torch.isfinite(got[key]), key
        torch.testing.assert_close(got[key].double(), expected[key], rtol=1e-4, atol=1e-5)


def test_loss_set_leaves_its_inputs_alone():
    half = _outputs(torch.float16)
    before = {k: v.clone() for k, v in half.items()}
    with EventStorage():
        _build("TripletLoss")(half, TARGETS)
    for k in half:
        assert half[k].dtype == before[k].dtype and torch.equal(half[k], before[k])


# ---------------------------------------------------------------- every meta-architecture
H, W = 32, 16
SIZE = {"MGN": (48, 16), "FGPose": (64, 32)}
CONFIGS = os.path.join(REPO, "projects")


def _tiny(cfg, arch):
    cfg.MODEL.META_ARCHITECTURE = arch
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.BACKBONE.DEPTH = "18x"
    cfg.MODEL.BACKBONE.FEAT_DIM = 512
    cfg.MODEL.BACKBONE.PRETRAIN = False
    cfg.MODEL.HEADS.NUM_CLASSES = C
    cfg.INPUT.SIZE_TRAIN = [H, W]
    cfg.INPUT.SIZE_TEST = [H, W]
    return cfg


def _cfg_baseline():
    return _tiny(build_config(freeze=False), "Baseline")


def _cfg_mgn():
    cfg = _tiny(build_config(freeze=False), "MGN")
    cfg.MODEL.BACKBONE.DEPTH = "50x"  # MGN copies layer3/layer4 Bottleneck blocks
    cfg.MODEL.BACKBONE.FEAT_DIM = 2048
    cfg.INPUT.SIZE_TRAIN = cfg.INPUT.SIZE_TEST = list(SIZE["MGN"])  # map height split in 2 and 3
    return cfg


def _cfg_video():
    cfg = _tiny(build_config(freeze=False), "VideoBaseline")
    cfg.MODEL.TEMPORAL.AGG = "attention"
    cfg.MODEL.TEMPORAL.ATT_DIM = 32
    cfg.MODEL.LOSSES.NAME = ("CrossEntropyLoss", "TripletLoss", "CenterLoss", "OSMLoss", "AttentionLoss")
    return cfg


def _cfg_fgreid():
    cfg = build_config(os.path.join(CONFIGS, "FGReID", "configs", "Synthetic", "fgreid.yml"), freeze=False)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.HEADS.NUM_CLASSES = C
    cfg.MODEL.FGREID.REDUCED_DIM = 16
    cfg.MODEL.FGREID.MARS_WEIGHTS = ""
    return cfg


def _cfg_mgrafa():
    cfg = _tiny(build_config(freeze=False), "MGRAFANet")
    cfg.MODEL.HEADS.NAME = "MGRAFAHead"
    cfg.INPUT.VIDEO.SEQ_LEN = T
    return cfg


def _cfg_fgpose():
    cfg = build_config(os.path.join(CONFIGS, "FGPose", "configs", "synthetic_cpu.yml"), freeze=False)
    cfg.MODEL.HEADS.NUM_CLASSES = C
    return cfg


def _cfg_mgre():
    cfg = _tiny(build_config(freeze=False), "MGRe")
    cfg.MODEL.LOSSES.NAME = ("CrossEntropyLoss", "TripletLoss")
    return cfg


#: a tiny config per registered meta-architecture; a new one must be added here (the test
#: below fails otherwise)
META_ARCH_CONFIGS = {"Baseline": _cfg_baseline, "MGN": _cfg_mgn, "VideoBaseline": _cfg_video,
                     "FGReID": _cfg_fgreid, "MGRAFANet": _cfg_mgrafa, "MGRe": _cfg_mgre,
                     "FGPose": _cfg_fgpose}
SEQ_LEN = {"FGPose": 6}  # its segments (T = 4, delta t = 2) need 6 consecutive frames
IMAGE_ONLY = {"Baseline", "MGN"}  # the host's image models: (B, C, H, W) batches
#: host meta-archs this plugin does not use: knowledge distillation (needs a teacher
#: checkpoint) and MoCo (self-supervised, no identity losses)
HOST_UNUSED = {"Distiller", "MoCo"}


def test_every_registered_meta_architecture_is_covered():
    missing = shipped_meta_architectures() - HOST_UNUSED - set(META_ARCH_CONFIGS)
    assert not missing, f"add a tiny config for {sorted(missing)} to META_ARCH_CONFIGS"


def _batch(arch, seed=0):
    g = torch.Generator().manual_seed(seed)
    cfg_t = SEQ_LEN.get(arch, T)
    h, w = SIZE.get(arch, (H, W))
    shape = (B, 3, h, w) if arch in IMAGE_ONLY else (B, cfg_t, 3, h, w)
    batch = {"images": torch.rand(*shape, generator=g) * 255, "targets": TARGETS.clone()}
    if arch not in IMAGE_ONLY:
        batch["erased"] = torch.zeros(B, cfg_t, dtype=torch.bool)
        batch["erased"][::2, 0] = True
        kp = torch.rand(B, cfg_t, 17, 3, generator=g)
        kp[..., 2] = 1.0
        batch["keypoints"] = kp
    return batch


_MODELS = {}


def _model(arch):
    from fastreid.modeling import build_model

    if arch not in _MODELS:
        torch.manual_seed(0)
        cfg = META_ARCH_CONFIGS[arch]()
        cfg.freeze()
        _MODELS[arch] = build_model(cfg)
    return _MODELS[arch]


def _train_step(model, batch, mode=None, dtype=None):
    model.train()
    model.zero_grad(set_to_none=True)
    with EventStorage():
        if mode is None:
            losses = model(batch)
        else:
            with _mode(mode, dtype):
                losses = model(batch)
    total = sum(v.float() for v in losses.values())
    total.backward()
    return losses


@pytest.mark.parametrize("arch", sorted(META_ARCH_CONFIGS))
def test_every_parameter_gets_a_gradient_unless_the_meta_arch_declares_unused_ones(arch):
    """DDP runs with ``find_unused_parameters=False`` unless a meta-arch declares it needs it."""
    model = _model(arch)
    _train_step(model, _batch(arch))
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    if not getattr(model, "ddp_find_unused_parameters", False):
        assert unused == []


#: bfloat16 only for whole models: the dtype-mixing crashes are the same with either half type
#: (``self BFloat16 and source Float``), float16 convolutions on CPU take minutes, and the losses
#: above are checked with both types; the trainer maps float16 on CPU to bfloat16
ARCH_MODES = [m for m in MODES if m[1] == torch.bfloat16]


@pytest.mark.parametrize("arch", sorted(META_ARCH_CONFIGS))
@pytest.mark.parametrize("mode,dtype", ARCH_MODES, ids=[i for m, i in zip(MODES, MODE_IDS) if m in ARCH_MODES])
def test_training_step_under_mixed_precision_gives_finite_losses_and_gradients(arch, mode, dtype):
    model = _model(arch)
    batch = _batch(arch)
    images = batch["images"].clone()
    losses = _train_step(model, batch, mode, dtype)
    assert losses
    for k, v in losses.items():
        assert torch.isfinite(v).all(), (k, v)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    if arch not in IMAGE_ONLY:  # the host Baseline normalises its input in place
        assert torch.equal(batch["images"], images)


@pytest.mark.parametrize("arch", sorted(META_ARCH_CONFIGS))
@pytest.mark.parametrize("mode,dtype", ARCH_MODES, ids=[i for m, i in zip(MODES, MODE_IDS) if m in ARCH_MODES])
def test_eval_forward_under_mixed_precision_matches_float32(arch, mode, dtype):
    """Inference under autocast (the self-test's AMP throughput, AMP extraction): finite
    ``(B, D)`` embeddings close to the float32 ones (bfloat16 keeps ~3 significant digits)."""
    model = _model(arch).eval()
    batch = _batch(arch)
    with torch.no_grad():
        ref = model(dict(batch, images=batch["images"].clone()))
        with _mode(mode, dtype):
            got = model(dict(batch, images=batch["images"].clone()))
    assert got.shape == ref.shape and torch.isfinite(got).all()
    cos = torch.nn.functional.cosine_similarity(got.float(), ref.float(), dim=1)
    assert cos.min() > 0.95, cos
