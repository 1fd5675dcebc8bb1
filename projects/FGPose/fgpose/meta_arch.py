"""FGPose meta-architecture (Yin, Wu, Zheng, "Fine-Grained Person Re-identification", IJCV 2020,
section 4, Fig. 7): global appearance, motion, motion-attentive and joint-specific streams.

    clip (B, L = T + dt, 3, H, W), keypoints (B, L, 17, 3)
    segment t = frames [0, T), segment t + dt = frames [dt, dt + T)
    global:  backbone levels 1..5 (stem, layer1..4) of segment t's frames
             -> level maps averaged over the T frames f_g1..f_g5; feature = GAP(f_g5)
    motion:  (own or shared) backbone levels of all L frames -> OFF unit per level
             (Sobel + temporal difference t / t + dt) -> motion maps f_m1..f_m5 averaged over T;
             feature = concat_i GAP(f_mi)
    ma:      masks from f_m (Eq. 1, ConvLSTM fine -> coarse), Eq. (2) alpha mixing, Eq. (3)
             on f_g; feature = concat_i GAP(f_i)
    js:      four part images per frame of segment t (head, body, hands, legs) -> FG-FN
             -> FG-ULN -> averaged over T
    each stream: BNNeck -> bias-free classifier (softmax cross-entropy), the core's
             :class:`fastreid_ext.modeling.heads.BNNeckClassifier`

Training loss Eq. (5): ``loss_global + W1 (loss_JS + loss_MA) + W2 loss_motion`` over the
streams in ``TRAIN_STREAMS`` (the others are frozen: section 5.1's steps), returned as named
terms ``loss_global``, ``loss_motion``, ``loss_ma``, ``loss_js`` (already weighted).

Test: the concatenation of each test stream's BN feature (L2-normalised per stream when
``EVAL_NORM``); :attr:`FGPose.distance_parts` tells the evaluator the streams' sizes, so the
distance is Eq. (4) / (6): the sum of the streams' Euclidean distances
(:mod:`fastreid_ext.evaluation.two_direction`), not the Euclidean distance of the concatenation.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from fastreid.config import configurable
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY
from fastreid_ext.modeling.heads import BNNeckClassifier
from fastreid_ext.modeling.meta_arch import ReidMetaArch
from fastreid_ext.modeling.resnet_levels import missing_resnet_parts, resnet_levels
from fastreid_ext.modeling.video_utils import build_backbone_offline

from .attention import MotionAttention
from .config import STREAMS, stream_lists, validate_fgpose_config
from .joint_stream import JointSpecificStream
from .motion import MotionStream

__all__ = ["FGPose", "backbone_levels", "MAKE_KEYPOINTS_HINT"]

logger = logging.getLogger("fastreid." + __name__)

MAKE_KEYPOINTS_HINT = (
    "FGPose's joint-specific stream needs pose keypoints in every batch (train and test): put "
    "keypoints.json in the dataset folder (the synthetic generator writes one; for real data run "
    "`python tools/make_keypoints.py --dataset-dir <dataset folder> --pose-model <local model>`), "
    "or leave 'js' out of MODEL.FGPOSE.STREAMS"
)


def backbone_levels(backbone: nn.Module, x: torch.Tensor) -> List[torch.Tensor]:
    """The five levels of a host-style ResNet: stem (conv1, bn1, relu, maxpool), layer1..4."""
    return resnet_levels(backbone, x)


def _check_backbone(backbone: nn.Module) -> None:
    missing = missing_resnet_parts(backbone)
    if missing:
        raise ValueError(f"FGPose needs a ResNet-style backbone (build_resnet_backbone or "
                         f"build_fgpose_tiny_backbone); {type(backbone).__name__} lacks {missing}")
    if any(len(getattr(backbone, f"NL_{i}", [])) for i in range(1, 5)):
        raise ValueError("FGPose reads the backbone's levels directly; MODEL.BACKBONE.WITH_NL is not supported")


class StreamHead(nn.Module):
    """One stream's BNNeck (bias frozen) + bias-free classifier, weight ``N(0, 0.001^2)``
    (:class:`fastreid_ext.modeling.heads.BNNeckClassifier`, drawn after ``nn.Linear``'s draw:
    the random stream this head has always had)."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.classifier = BNNeckClassifier(dim, num_classes, init_std=0.001, weight_init="linear_then_normal")

    def neck(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D) -> (B, D)``: the BN feature (the test embedding's part)."""
        return self.classifier.neck(x)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(B, D)`` -> (BN feature ``(B, D)``, logits ``(B, num_classes)``)."""
        out = self.classifier(x)
        return out["neck_features"], out["pred_class_logits"]


@META_ARCH_REGISTRY.register()
class FGPose(ReidMetaArch):
    """FGPose (see the module docstring). ``forward(batched_inputs)``: ``images``
    ``(B, L, 3, H, W)`` (0..255, never modified), ``targets`` (training), ``keypoints``
    ``(B, L, 17, 3)`` when the ``js`` stream is built."""

    @configurable
    def __init__(self, *, backbone: nn.Module, motion_backbone: Optional[nn.Module], num_classes: int,
                 input_size: Sequence[int], pixel_mean: Sequence[float], pixel_std: Sequence[float],
                 streams: Sequence[str] = STREAMS, train_streams: Sequence[str] = (),
                 test_streams: Sequence[str] = (), segment_len: int = 10, delta_t: int = 5,
                 motion_backbone_mode: str = "separate", off_reduction: int = 4, alpha: float = 0.2,
                 attention_levels: Sequence[int] = (1, 2, 3, 4, 5), attention_order: str = "fine_to_coarse",
                 attention_net: str = "rnn", attention_source: str = "motion", rnn_hidden: int = 64,
                 part_size: int = 224, fn_width: int = 32, js_dim: int = 512, part_margin: float = 0.04,
                 w1: float = 1.0, w2: float = 1.0, ce_epsilon: float = 0.0, eval_norm: bool = True,
                 dist_weights: Sequence[float] = ()):
        super().__init__(pixel_mean=pixel_mean, pixel_std=pixel_std)
        # the keyword values are validated (fgpose.config.validate_fgpose_config, from_config)
        self.streams, self.train_streams, self.test_streams = stream_lists(streams, train_streams, test_streams)
        _check_backbone(backbone)
        self.backbone = backbone
        self.motion_mode = motion_backbone_mode
        self.segment_len, self.delta_t = int(segment_len), int(delta_t)
        self.w1, self.w2, self.ce_epsilon = float(w1), float(w2), float(ce_epsilon)
        self.eval_norm = bool(eval_norm)
        self.dist_weights = [float(w) for w in dist_weights] or None

        shapes = self._level_shapes(backbone, input_size)  # 5 x (C, h, w)
        chans = [s[0] for s in shapes]
        dims: Dict[str, int] = {"global": chans[-1]}
        self.motion_backbone = None
        if "motion" in self.streams:
            if motion_backbone_mode == "separate":
                if motion_backbone is None:
                    raise ValueError("MOTION_BACKBONE 'separate' needs a motion backbone")
                _check_backbone(motion_backbone)
                self.motion_backbone = motion_backbone
            self.motion = MotionStream(chans, off_reduction)
            dims["motion"] = self.motion.out_dim
        if "ma" in self.streams:
            guides = self.motion.level_channels if attention_source == "motion" else chans
            self.attention = MotionAttention(guides, shapes[2][1:], attention_levels, alpha, attention_order,
                                             attention_net, rnn_hidden)
            self.attention_source = attention_source
            dims["ma"] = sum(chans)
        if "js" in self.streams:
            self.joint = JointSpecificStream(fn_width, js_dim, part_size, part_margin)
            dims["js"] = self.joint.out_dim
        self.heads = nn.ModuleDict({s: StreamHead(dims[s], num_classes) for s in self.streams})
        self.stream_dims = {s: dims[s] for s in self.streams}
        self._frozen: List[nn.Module] = []
        for s in self.streams:
            if s not in self.train_streams:
                for m in self._stream_modules(s):
                    m.requires_grad_(False)
                    self._frozen.append(m)
        self._diag: Dict[str, torch.Tensor] = {}
        logger.info(f"FGPose: streams {self.streams} (dims {self.stream_dims}), training {self.train_streams}, "
                    f"test embedding {self.test_streams}; T = {self.segment_len}, delta t = {self.delta_t}")

    # ------------------------------------------------------------------ building
    @classmethod
    def from_config(cls, cfg) -> Dict:
        validate_fgpose_config(cfg)  # build_config ran it; again for a config made by hand
        m = cfg.MODEL.FGPOSE
        num_classes = ReidMetaArch.num_classes_of(cfg)
        streams = list(m.STREAMS)
        separate = "motion" in streams and m.MOTION_BACKBONE == "separate"
        return {
            "backbone": build_backbone_offline(cfg),
            "motion_backbone": build_backbone_offline(cfg) if separate else None,
            "num_classes": num_classes,
            "input_size": tuple(cfg.INPUT.SIZE_TRAIN),
            **ReidMetaArch.pixel_config(cfg),
            "streams": streams,
            "train_streams": list(m.TRAIN_STREAMS),
            "test_streams": list(m.TEST_STREAMS),
            "segment_len": m.SEGMENT_LEN,
            "delta_t": m.DELTA_T,
            "motion_backbone_mode": m.MOTION_BACKBONE,
            "off_reduction": m.OFF_REDUCTION,
            "alpha": m.ALPHA,
            "attention_levels": list(m.ATTENTION_LEVELS),
            "attention_order": m.ATTENTION_ORDER,
            "attention_net": m.ATTENTION_NET,
            "attention_source": m.ATTENTION_SOURCE,
            "rnn_hidden": m.RNN_HIDDEN,
            "part_size": m.PART_SIZE,
            "fn_width": m.FN_WIDTH,
            "js_dim": m.JS_DIM,
            "part_margin": m.PART_MARGIN,
            "w1": m.W1,
            "w2": m.W2,
            "ce_epsilon": m.CE_EPSILON,
            "eval_norm": m.EVAL_NORM,
            "dist_weights": list(m.DIST_WEIGHTS),
        }

    @staticmethod
    @torch.no_grad()
    def _level_shapes(backbone: nn.Module, input_size: Sequence[int]) -> List[Tuple[int, int, int]]:
        was = backbone.training
        backbone.eval()
        try:
            outs = backbone_levels(backbone, torch.zeros(1, 3, int(input_size[0]), int(input_size[1])))
        finally:
            backbone.train(was)
        return [(int(o.shape[1]), int(o.shape[2]), int(o.shape[3])) for o in outs]

    def _stream_modules(self, stream: str) -> List[nn.Module]:
        mods = {"global": [self.backbone], "motion": [getattr(self, "motion", None), self.motion_backbone],
                "ma": [getattr(self, "attention", None)], "js": [getattr(self, "joint", None)]}[stream]
        return [m for m in mods if m is not None] + [self.heads[stream]]

    def train(self, mode: bool = True):
        """Frozen streams keep their BatchNorm statistics (eval mode) while the rest trains."""
        super().train(mode)
        for m in self._frozen:
            m.eval()
        return self

    @property
    def distance_parts(self) -> Tuple[int, ...]:
        """Sizes of the test embedding's per-stream parts (the evaluator sums their Euclidean
        distances: Eq. (4), (6))."""
        return tuple(self.stream_dims[s] for s in self.test_streams)

    @property
    def distance_weights(self) -> Optional[List[float]]:
        return self.dist_weights

    def diagnostics(self) -> Dict[str, float]:
        """Scalars of the last training forward: ``ma_mask_mean`` / ``ma_mask_std`` (refined
        masks, Eq. 2) and ``js_box_area`` (mean part-box area, fraction of the frame)."""
        return {k: float(v) for k, v in self._diag.items()}

    # ------------------------------------------------------------------ forward
    def _trainable(self, stream: str) -> bool:
        return self.training and stream in self.train_streams

    def _grad(self, stream: str):
        return contextlib.nullcontext() if self._trainable(stream) else torch.no_grad()

    def _clips(self, batched_inputs) -> torch.Tensor:
        clips = self.preprocess(batched_inputs)  # (B, L, C, H, W), normalised
        need = self.segment_len + self.delta_t
        if clips.shape[1] != need:
            raise ValueError(f"FGPose needs clips of SEGMENT_LEN + DELTA_T = {need} consecutive frames, "
                             f"got {clips.shape[1]} (INPUT.VIDEO.SEQ_LEN / TEST.VIDEO.SEQ_LEN)")
        return clips

    def _keypoints(self, batched_inputs, b: int, length: int) -> torch.Tensor:
        kp = batched_inputs.get("keypoints") if isinstance(batched_inputs, dict) else None
        if kp is None:
            raise KeyError(f"the batch has no 'keypoints'. {MAKE_KEYPOINTS_HINT}")
        kp = torch.as_tensor(kp, dtype=torch.float32, device=self.device)
        if tuple(kp.shape) != (b, length, 17, 3):
            raise ValueError(f"keypoints must be (B, L, 17, 3) = {(b, length, 17, 3)}, got {tuple(kp.shape)}")
        return kp

    def _computed_streams(self, wanted: Sequence[str]) -> List[str]:
        """``wanted`` and the streams they read: ``ma`` reads the global maps, and the motion
        maps when its masks are motion-guided (ATTENTION_SOURCE motion, at least one level)."""
        need = set(wanted)
        if "ma" in need:
            need.add("global")
            if self.attention_source == "motion" and self.attention.levels:
                need.add("motion")
        return [s for s in self.streams if s in need]

    def _forward_streams(self) -> List[str]:
        """Streams a forward computes: in training those whose loss is used (``TRAIN_STREAMS``;
        the frozen ones feed no loss: section 5.1's steps), at test those in the embedding."""
        return self._computed_streams(self.train_streams if self.training else self.test_streams)

    def eval_streams(self) -> List[str]:
        """The streams the test embedding computes: ``TEST_STREAMS`` and what they read."""
        return self._computed_streams(self.test_streams)

    def export_inputs(self) -> Tuple[str, ...]:
        """Batch keys the eval forward reads (``fastreid_ext.deploy.onnx_export.export_inputs``):
        keypoints only when the joint-specific stream is among the test streams."""
        return ("images", "keypoints") if "js" in self.eval_streams() else ("images",)

    def stream_features(self, batched_inputs, streams: Optional[Sequence[str]] = None) -> Dict[str, torch.Tensor]:
        """Pre-BN features ``{stream: (B, D_s)}`` of ``streams`` (default: every built stream)
        and of the streams they read."""
        clips = self._clips(batched_inputs)
        b, length = clips.shape[:2]
        T = self.segment_len
        todo = self._computed_streams(self.streams if streams is None else streams)
        shared_motion = "motion" in todo and self.motion_backbone is None
        feats: Dict[str, torch.Tensor] = {}
        gmaps: Optional[List[torch.Tensor]] = None
        glevels_all: Optional[List[torch.Tensor]] = None
        if "global" in todo or shared_motion:
            # (B, L, ...) levels when the OFF units read them, else segment t's frames only
            frames = clips if shared_motion else clips[:, :T]
            n = frames.shape[1]
            with self._grad("global"):  # frozen global stream: plain inputs of the other streams
                levels = backbone_levels(self.backbone, frames.reshape(b * n, *clips.shape[2:]))
            glevels_all = [x.view(b, n, *x.shape[1:]) for x in levels]
            gmaps = [x[:, :T].mean(dim=1) for x in glevels_all]  # (B, C_i, h_i, w_i)
            feats["global"] = gmaps[-1].mean(dim=(2, 3))
        mmaps = None
        if "motion" in todo:
            with self._grad("motion"):
                if shared_motion:
                    levels = glevels_all
                else:
                    flat = backbone_levels(self.motion_backbone, clips.reshape(b * length, *clips.shape[2:]))
                    levels = [x.view(b, length, *x.shape[1:]) for x in flat]
                feats["motion"], mmaps = self.motion(levels, T, self.delta_t)
        if "ma" in todo:
            guides = mmaps if self.attention_source == "motion" else gmaps
            with self._grad("ma"):
                feats["ma"] = self.attention(guides, gmaps)
        if "js" in todo:
            kp = self._keypoints(batched_inputs, b, length)[:, :T].reshape(b * T, 17, 3)
            with self._grad("js"):
                f = self.joint(clips[:, :T].reshape(b * T, *clips.shape[2:]), kp)
                feats["js"] = f.view(b, T, -1).mean(dim=1)
        return feats

    def forward(self, batched_inputs: Union[Dict, torch.Tensor]):
        feats = self.stream_features(batched_inputs, self._forward_streams())
        if not self.training:
            parts = []
            for s in self.test_streams:
                f = self.heads[s].neck(feats[s])
                parts.append(F.normalize(f, dim=1) if self.eval_norm else f)
            return torch.cat(parts, dim=1)

        targets = self.batch_targets(batched_inputs)
        weight = {"global": 1.0, "js": self.w1, "ma": self.w1, "motion": self.w2}  # Eq. (5)
        losses = {}
        for s in self.train_streams:
            _, logits = self.heads[s](feats[s])
            losses[f"loss_{s}"] = weight[s] * F.cross_entropy(logits, targets, label_smoothing=self.ce_epsilon)
        self._record_diagnostics(feats)
        return losses

    def _record_diagnostics(self, feats: Dict[str, torch.Tensor]) -> None:
        """Kept as detached tensors (no device sync per iteration); :meth:`diagnostics` reads them."""
        diag = {}
        if "ma" in feats and self.attention.last_masks:
            m = torch.cat([v.flatten() for v in self.attention.last_masks.values()])
            diag["ma_mask_mean"] = m.mean()
            diag["ma_mask_std"] = m.std() if m.numel() > 1 else m.new_zeros(())
        if "js" in feats and self.joint.last_boxes is not None:
            boxes = self.joint.last_boxes
            diag["js_box_area"] = (boxes[..., 2] * boxes[..., 3]).mean()
        self._diag = diag
