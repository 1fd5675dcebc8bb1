"""MGRe meta-architecture (the MGRe paper, section 3, Fig. 2): multi-granularity features learned
from multi-granularity body regions.

    frames (B*T, 3, H, W) --host ResNet--> stage maps s1..s4
    s1, s2 += conv1x1(upsample(s4))                       (semantic guidance)
    stage g in STAGES (1, 2, 3): location module (Eq. 1) -> regions (Table 1)
        -> bilinear sampling (Eq. 4-5) -> residual block of granularity g -> GAP + GMP
        -> concat over regions -> Linear -> 512-d F_g
    stage 4: residual block -> GAP + GMP -> Linear -> 512-d F_4
    F_g averaged over the T frames (video: temporal pooling) -> BNNeck -> classifier
    test: Eq. (6) [l1 F1/|F1|, ..., l4 F4/|F4|] = 2048-d

Training loss Eq. (9): ``LAMBDA * sum_{g<=3} (LOC_WEIGHT L_g^loc + L_g^ID + L_g^tri) + L_4^ID + L_4^tri``
(``LOC_WEIGHT`` = 1 is the paper's equation),
returned as named terms ``stage{g}_loss_cls``, ``stage{g}_loss_triplet``,
``stage{g}_loss_location`` (each already weighted). The location loss (Eq. 3) is computed
here (it needs the regions and the keypoints), not through the loss registry.
"""
from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from fastreid.config import configurable
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY
from fastreid_ext.modeling.losses import LossSet, build_losses
from fastreid_ext.modeling.meta_arch import ReidMetaArch
from fastreid_ext.modeling.resnet_levels import missing_resnet_parts, resnet_levels
from fastreid_ext.modeling.video_utils import build_backbone_offline

from .config import validate_mgre_config
from .embedding import ResidualBlock, StageEmbedding, gap_gmp, weighted_concat
from .location import (
    LocationModule,
    box_iou,
    boxes_from_keypoints,
    location_loss,
    offmap_fraction,
)
from .regions import REFERENCE_INPUT, Region, prior_box_size, regions_of_stage, scaled_size
from .sampling import region_corners, sample_region

__all__ = ["MGRe", "backbone_stages", "scale_grad", "MAKE_KEYPOINTS_HINT"]

logger = logging.getLogger("fastreid." + __name__)

MAKE_KEYPOINTS_HINT = (
    "MGRe needs pose pseudo labels: put keypoints.json next to the dataset (the synthetic "
    "generator writes one; for real data run `python tools/make_keypoints.py --dataset-dir "
    "<dataset folder> --pose-model <your local pose model>`), or train without the location "
    "loss with MODEL.MGRE.USE_KEYPOINTS False"
)


def backbone_stages(backbone: nn.Module, x: torch.Tensor) -> List[torch.Tensor]:
    """Outputs of the four residual stages of the host ResNet
    (``fastreid/modeling/backbones/resnet.py``: conv1, bn1, relu, maxpool, layer1..layer4)."""
    return resnet_levels(backbone, x)[1:]


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, factor):
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.factor, None


def scale_grad(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Identity in the forward pass; multiplies the gradient by ``factor`` in the backward."""
    if factor == 1.0:
        return x
    return _ScaleGrad.apply(x, float(factor))


def _num_blocks(module: nn.Module) -> int:
    return sum(isinstance(m, ResidualBlock) for m in module.modules())


def _check_backbone(backbone: nn.Module) -> None:
    missing = missing_resnet_parts(backbone)
    if missing:
        raise ValueError(f"MGRe needs a host ResNet backbone (build_resnet_backbone); "
                         f"{type(backbone).__name__} lacks {missing}")
    if any(len(getattr(backbone, f"NL_{i}", [])) for i in range(1, 5)):
        raise ValueError("MGRe reads the four stages directly; MODEL.BACKBONE.WITH_NL is not supported")


@META_ARCH_REGISTRY.register()
class MGRe(ReidMetaArch):
    """Multiple Granularities ReID (the MGRe paper).

    ``forward(batched_inputs)``: ``images`` ``(B, T, 3, H, W)`` or ``(B, 3, H, W)`` (0..255,
    never modified), ``targets`` (training) and ``keypoints`` ``(B, T, 17, 3)`` when the
    location loss or keypoint regions are used. Training returns the named Eq. (9) terms; eval
    the ``(B, 512 * (len(stages) + 1))`` Eq. (6) embedding.
    """

    @configurable
    def __init__(self, *, backbone: nn.Module, losses: LossSet, num_classes: int,
                 input_size: Sequence[int], pixel_mean: Sequence[float], pixel_std: Sequence[float],
                 stages: Sequence[int] = (1, 2, 3), mode: str = "multi_granularity",
                 joint_optimization: bool = True, use_keypoints: bool = True,
                 semantic_guidance: bool = True, embed_dim: int = 512,
                 feat_weights: Sequence[float] = (0.35, 0.5, 0.7, 0.8), lam: float = 1.0,
                 loc_margin: float = 0.05, loc_weight: float = 1.0,
                 loc_param: str = "bounded", loc_init_std: float = 1e-3, loc_padding: str = "border",
                 loc_reid_grad: float = 1.0, fe_module: str = "bottleneck",
                 loc_hidden: int = 128, loc_pool: Sequence[int] = (4, 2),
                 ref_input_size: Sequence[int] = REFERENCE_INPUT, eval_feat: str = "after"):
        super().__init__(pixel_mean=pixel_mean, pixel_std=pixel_std)
        stages = [int(s) for s in stages]  # values checked by validate_mgre_config (from_config)
        _check_backbone(backbone)
        self.backbone = backbone
        self.losses = losses
        self.stages = sorted(stages)
        self.mode = mode
        self.joint_optimization = bool(joint_optimization)
        self.use_keypoints = bool(use_keypoints)
        self.lam = float(lam)
        self.loc_margin = float(loc_margin)
        self.loc_weight = float(loc_weight)
        self.loc_padding = loc_padding
        self.loc_reid_grad = float(loc_reid_grad)
        self.fe_module = fe_module
        self.eval_feat = eval_feat
        self._diag: Dict[str, object] = {}
        self.ref_input_size = tuple(int(v) for v in ref_input_size)
        feature_stages = [] if mode == "baseline_jo" else self.stages
        self.feat_weights = [float(feat_weights[g - 1]) for g in feature_stages] + [float(feat_weights[3])]

        shapes = self._stage_shapes(input_size)  # 4 x (C, h, w)
        c4, h4 = shapes[3][0], shapes[3][1]
        located = mode != "single_grained_regions"
        self.regions: Dict[int, List[Region]] = {g: regions_of_stage(g) for g in self.stages}
        self.out_sizes: Dict[int, List[Tuple[int, int]]] = {}
        self.guidance = nn.ModuleDict()
        self.location = nn.ModuleDict()
        self.extractors = nn.ModuleDict()
        self.embeddings = nn.ModuleDict()
        for g in self.stages:
            on_stage4 = mode == "single_grained_features"
            channels = c4 if on_stage4 else shapes[g - 1][0]
            ratio = shapes[g - 1][1] / h4 if on_stage4 else 1.0
            regions = self.regions[g]
            self.out_sizes[g] = [scaled_size(r, input_size, ref_input_size, ratio) for r in regions]
            if semantic_guidance and not on_stage4 and g in (1, 2) and mode != "baseline_jo":
                self.guidance[f"stage{g}"] = nn.Conv2d(c4, channels, 1)
            if located and self.joint_optimization:
                priors = [(r.cx, r.cy) + prior_box_size(r, ref_input_size) for r in regions]
                self.location[f"stage{g}"] = LocationModule(channels, priors, loc_hidden, loc_pool,
                                                            loc_param, loc_init_std)
            if mode == "baseline_jo":
                continue
            self.extractors[f"stage{g}"] = self._feature_extractor(backbone, g, channels)
            n_regions = len(regions) if located else 1
            self.embeddings[f"stage{g}"] = StageEmbedding(channels, n_regions, embed_dim, num_classes)
        self.extractors["stage4"] = self._feature_extractor(backbone, 4, c4)
        self.embeddings["stage4"] = StageEmbedding(c4, 1, embed_dim, num_classes)
        self.feature_stages = feature_stages
        self.output_dim = embed_dim * (len(feature_stages) + 1)
        self._log_setup()

    def _log_setup(self) -> None:
        """One log line for the feature-extraction modules, one for the location setup."""
        logger.info(f"MGRe feature-extraction modules: {self.fe_module} "
                    f"({', '.join(f'{k}: {_num_blocks(v)} bottleneck(s)' for k, v in self.extractors.items())})")
        mode, located = self.mode, self.mode != "single_grained_regions"
        if mode == "baseline_jo":
            logger.info(f"MGRe Baseline + JO (Table 7): location modules + location loss on stages "
                        f"{self.stages}, features from stage 4 only")
        elif located and not self.joint_optimization:
            logger.info("MGRe w/o joint optimisation: regions are the keypoint boxes (train and test); "
                        "no location modules, no location loss")
        elif not located or not self.stages:
            logger.info(f"MGRe mode {mode} with stages {self.stages}: no location modules, no location loss")
        elif self.use_keypoints:
            logger.info(f"MGRe: location loss (Eq. 3, margin {self.loc_margin}) ON for stages {self.stages}")
        else:
            logger.info("MGRe: location loss OFF (MODEL.MGRE.USE_KEYPOINTS False): the location "
                        "modules are trained by the ReID losses only")

    def _feature_extractor(self, backbone: nn.Module, g: int, channels: int) -> nn.Module:
        """Feature-extraction module of granularity ``g`` (section 3.1, "one residual block"):
        one bottleneck block (``FE_MODULE bottleneck``), or as many bottlenecks as the
        backbone's stage ``g`` has (``stage``; ResNet-50: 3, 4, 6, 3), channels and size kept."""
        if self.fe_module == "bottleneck":
            return ResidualBlock(channels)
        return nn.Sequential(*[ResidualBlock(channels) for _ in getattr(backbone, f"layer{g}")])

    # ------------------------------------------------------------------ building
    @classmethod
    def from_config(cls, cfg) -> Dict:
        validate_mgre_config(cfg)  # build_config ran it; again for a config made by hand
        backbone = build_backbone_offline(cfg)
        num_classes = cls.num_classes_of(cfg)
        m = cfg.MODEL.MGRE
        losses = build_losses(cfg, feat_dim=m.EMBED_DIM, num_classes=num_classes)
        return {
            "backbone": backbone,
            "losses": losses,
            "num_classes": num_classes,
            "input_size": tuple(cfg.INPUT.SIZE_TRAIN),
            **cls.pixel_config(cfg),
            "stages": list(m.STAGES),
            "mode": m.MODE,
            "joint_optimization": m.JOINT_OPTIMIZATION,
            "use_keypoints": m.USE_KEYPOINTS,
            "semantic_guidance": m.SEMANTIC_GUIDANCE,
            "embed_dim": m.EMBED_DIM,
            "feat_weights": list(m.FEAT_WEIGHTS),
            "lam": m.LAMBDA,
            "loc_margin": m.LOC_MARGIN,
            "loc_weight": m.LOC_WEIGHT,
            "loc_param": m.LOC_PARAM,
            "loc_init_std": m.LOC_INIT_STD,
            "loc_padding": m.LOC_PADDING,
            "loc_reid_grad": m.LOC_REID_GRAD,
            "fe_module": m.FE_MODULE,
            "loc_hidden": m.LOC_HIDDEN,
            "loc_pool": list(m.LOC_POOL),
            "ref_input_size": list(m.REF_INPUT_SIZE),
            "eval_feat": m.EVAL_FEAT,
        }

    @torch.no_grad()
    def _stage_shapes(self, input_size: Sequence[int]) -> List[Tuple[int, int, int]]:
        was = self.backbone.training
        self.backbone.eval()
        try:
            outs = backbone_stages(self.backbone, torch.zeros(1, 3, int(input_size[0]), int(input_size[1])))
        finally:
            self.backbone.train(was)
        return [(int(o.shape[1]), int(o.shape[2]), int(o.shape[3])) for o in outs]

    @property
    def needs_keypoints(self) -> bool:
        """Whether the current mode reads ``keypoints`` from the batch."""
        if self.mode == "single_grained_regions" or not self.stages:
            return False
        if not self.joint_optimization:
            return True
        return self.training and self.use_keypoints

    # ------------------------------------------------------------------ forward pieces
    def _frame_keypoints(self, batched_inputs, b: int, t: int) -> Optional[torch.Tensor]:
        """``(B*T, 17, 3)`` keypoints, or ``None`` when not needed; missing -> clear error."""
        if not self.needs_keypoints:
            return None
        kp = batched_inputs.get("keypoints") if isinstance(batched_inputs, dict) else None
        if kp is None:
            raise KeyError(f"the batch has no 'keypoints'. {MAKE_KEYPOINTS_HINT}")
        kp = torch.as_tensor(kp, dtype=torch.float32, device=self.device)
        if kp.dim() == 3:
            kp = kp.unsqueeze(1)
        if tuple(kp.shape) != (b, t, 17, 3):
            raise ValueError(f"keypoints must be (B, T, 17, 3) = {(b, t, 17, 3)}, got {tuple(kp.shape)}")
        return kp.reshape(b * t, 17, 3)

    def _source_maps(self, frames: torch.Tensor) -> Dict[int, torch.Tensor]:
        """Stage maps the regions are read from: ``{g: (N, C, h, w)}`` for g in STAGES and 4."""
        s = backbone_stages(self.backbone, frames)
        maps = {4: s[3]}
        for g in self.stages:
            if self.mode == "single_grained_features":
                maps[g] = s[3]
                continue
            x = s[g - 1]
            conv = self.guidance[f"stage{g}"] if f"stage{g}" in self.guidance else None
            if conv is not None:  # semantic guidance (section 3.1)
                up = F.interpolate(s[3], size=x.shape[-2:], mode="bilinear", align_corners=False)
                x = x + conv(up)
            maps[g] = x
        return maps

    def _regions(self, g: int, maps: torch.Tensor, kp: Optional[torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Centres / sizes ``(N, R, 2)`` of stage ``g``'s regions (location module or keypoints)."""
        key = f"stage{g}"
        if key in self.location:
            return self.location[key](maps)
        regions = self.regions[g]
        pc = maps.new_tensor([[r.cx, r.cy] for r in regions])
        ps = maps.new_tensor([list(prior_box_size(r, self.ref_input_size)) for r in regions])
        centers, sizes = boxes_from_keypoints(kp, [r.joints for r in regions], pc, ps, self.loc_margin)
        return {"centers": centers, "sizes": sizes}

    def frame_features(self, frames: torch.Tensor, kp: Optional[torch.Tensor] = None):
        """``(N, 3, H, W)`` normalised frames -> ``({g: (N, dim)} pre-BN stage features,
        {g: located regions})``."""
        maps = self._source_maps(frames)
        feats, located = {}, {}
        for g in self.stages:
            key = f"stage{g}"
            if self.mode == "single_grained_regions":
                feats[g] = self.embeddings[key].project([gap_gmp(self.extractors[key](maps[g]))])
                continue
            reg = self._regions(g, maps[g], kp)
            located[g] = reg
            if self.mode == "baseline_jo":
                continue
            fe = self.extractors[key]
            # the ReID losses reach the location module through the sampled boxes, scaled by
            # LOC_REID_GRAD (the location loss reads reg[...] unscaled)
            centers = scale_grad(reg["centers"], self.loc_reid_grad)
            sizes = scale_grad(reg["sizes"], self.loc_reid_grad)
            vectors = [gap_gmp(fe(sample_region(maps[g], centers[:, r], sizes[:, r], size, self.loc_padding)))
                       for r, size in enumerate(self.out_sizes[g])]
            feats[g] = self.embeddings[key].project(vectors)
        feats[4] = self.embeddings["stage4"].project([gap_gmp(self.extractors["stage4"](maps[4]))])
        return feats, located

    def _clips(self, batched_inputs) -> torch.Tensor:
        return self.preprocess(batched_inputs)  # (B, T, C, H, W)

    @torch.no_grad()
    def locate(self, batched_inputs) -> Dict[int, torch.Tensor]:
        """Located regions per stage: ``{g: (B, T, R, 4)}`` boxes ``(x0, y0, x1, y1)`` in
        ``[0, 1]`` of the input image (Eq. 2). Empty for single-grained regions."""
        clips = self._clips(batched_inputs)
        b, t = clips.shape[:2]
        kp = None
        if self.mode != "single_grained_regions" and not self.joint_optimization:
            kp = self._frame_keypoints(batched_inputs, b, t)
        _, located = self.frame_features(clips.reshape(b * t, *clips.shape[2:]), kp)
        out = {}
        for g, reg in located.items():
            x0, x1, y0, y1 = region_corners(reg["centers"], reg["sizes"])
            out[g] = torch.stack([x0, y0, x1, y1], dim=-1).view(b, t, -1, 4)
        return out

    # ------------------------------------------------------------------ diagnostics
    @torch.no_grad()
    def _remember(self, located: Dict[int, Dict[str, torch.Tensor]], kp: Optional[torch.Tensor]) -> None:
        self._diag = {"regions": {g: (r["centers"].detach(), r["sizes"].detach()) for g, r in located.items()},
                      "keypoints": None if kp is None else kp.detach()}

    @torch.no_grad()
    def diagnostics(self) -> Dict[str, float]:
        """Region scalars of the last training forward (preamble contract): ``region_iou_s{g}``
        = mean IoU of stage ``g``'s regions with their keypoint boxes (the minimiser of Eq. (3):
        the visible joints' box grown by the margin; only regions with a visible joint; present
        when the batch had keypoints) and ``region_offmap_frac`` = mean fraction of the region
        area outside the map. Empty before the first training forward."""
        regions = self._diag.get("regions") or {}
        kp = self._diag.get("keypoints")
        out: Dict[str, float] = {}
        offmap = []
        for g, (centers, sizes) in regions.items():
            offmap.append(offmap_fraction(centers, sizes).reshape(-1))
            if kp is None:
                continue
            regs = self.regions[g]
            joints = [r.joints for r in regs]
            pc = centers.new_tensor([[r.cx, r.cy] for r in regs])
            ps = centers.new_tensor([list(prior_box_size(r, self.ref_input_size)) for r in regs])
            kc, ks = boxes_from_keypoints(kp, joints, pc, ps, self.loc_margin)
            visible = torch.stack([(kp[:, list(j), 2] > 0).any(dim=1) for j in joints], dim=1)  # (N, R)
            if bool(visible.any()):
                out[f"region_iou_s{g}"] = float(box_iou(centers, sizes, kc, ks)[visible].mean())
        if offmap:
            out["region_offmap_frac"] = float(torch.cat(offmap).mean())
        return out

    def forward(self, batched_inputs: Union[Dict, torch.Tensor]):
        clips = self._clips(batched_inputs)
        b, t = clips.shape[:2]
        kp = self._frame_keypoints(batched_inputs, b, t)
        feats, located = self.frame_features(clips.reshape(b * t, *clips.shape[2:]), kp)
        # temporal pooling of the per-frame stage vectors: (B*T, dim) -> (B, dim)
        clip_feats = {g: f.view(b, t, -1).mean(dim=1) for g, f in feats.items()}
        order = self.feature_stages + [4]
        if not self.training:
            key = "bn_features" if self.eval_feat == "after" else "features"
            vecs = [self.embeddings[f"stage{g}"].head(clip_feats[g])[key] for g in order]
            return weighted_concat(vecs, self.feat_weights)  # Eq. (6)

        targets = self.batch_targets(batched_inputs)
        result: Dict[str, torch.Tensor] = {}
        for g in order:
            outputs = self.embeddings[f"stage{g}"].head(clip_feats[g], targets)
            weight = self.lam if g != 4 else 1.0  # Eq. (9)
            for name, value in self.losses(outputs, targets, prefix=f"stage{g}_").items():
                result[name] = value * weight
        diag_kp = kp
        if diag_kp is None and isinstance(batched_inputs, dict) and batched_inputs.get("keypoints") is not None:
            diag_kp = torch.as_tensor(batched_inputs["keypoints"], dtype=torch.float32,
                                      device=self.device).reshape(b * t, 17, 3)  # for diagnostics only
        self._remember(located, diag_kp)
        if self.use_keypoints and kp is not None:
            for g, reg in located.items():
                if f"stage{g}" in self.location:
                    joints = [r.joints for r in self.regions[g]]
                    loss = location_loss(reg["centers"], reg["sizes"], kp, joints, self.loc_margin)
                    result[f"stage{g}_loss_location"] = self.lam * self.loc_weight * loss
        return result
