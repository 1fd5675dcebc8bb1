"""Helpers every video meta-architecture shares (the video baseline and the projects' models).

- :func:`preprocess_clip`: normalise a batch of clips (or images, as clips of length 1)
  with ``MODEL.PIXEL_MEAN/STD`` without touching the input (the host's
  ``Baseline.preprocess_image`` normalises in place, ``fastreid/modeling/meta_arch/baseline.py:130``).
- :func:`frame_features`: run a 2-D backbone on every frame of ``(B, T, C, H, W)`` clips.
- :func:`feature_map_shape`: the ``(C', h, w)`` a backbone produces for an input size.
- :func:`check_pretrained_available` / :func:`build_backbone_offline`: build the host backbone
  but fail with a clear ``FileNotFoundError`` instead of the host's silent download
  (``fastreid/modeling/backbones/resnet.py:276-283`` calls ``gdown`` when
  ``MODEL.BACKBONE.PRETRAIN_PATH`` is empty).
"""
from __future__ import annotations

import os
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import nn

__all__ = [
    "as_clips",
    "preprocess_clip",
    "frame_features",
    "feature_map_shape",
    "check_pretrained_available",
    "build_backbone_offline",
]


def as_clips(images: torch.Tensor) -> torch.Tensor:
    """View ``(B, C, H, W)`` images as clips ``(B, 1, C, H, W)``; clips pass through.

    Raises ``ValueError`` for any other rank.
    """
    if images.dim() == 4:
        return images.unsqueeze(1)
    if images.dim() == 5:
        return images
    raise ValueError(
        f"expected images of shape (B, T, C, H, W) or (B, C, H, W), got {tuple(images.shape)}"
    )


def preprocess_clip(images: torch.Tensor,
                    pixel_mean: Union[torch.Tensor, Sequence[float]],
                    pixel_std: Union[torch.Tensor, Sequence[float]]) -> torch.Tensor:
    """Normalise clips: ``(images - mean) / std`` per channel, as a new float tensor.

    Args:
        images: ``(B, T, C, H, W)`` or ``(B, C, H, W)`` (read as ``T = 1``), values 0..255.
            Never modified.
        pixel_mean, pixel_std: ``C`` values (any shape with ``C`` elements, e.g. the
            ``(1, C, 1, 1)`` buffers of the host ``Baseline``). When tensors, the result
            lives on their device.

    Returns:
        ``(B, T, C, H, W)`` float tensor.
    """
    clips = as_clips(images)
    mean = torch.as_tensor(pixel_mean, dtype=torch.float32)
    std = torch.as_tensor(pixel_std, dtype=torch.float32)
    channels = clips.shape[2]
    if mean.numel() != channels or std.numel() != channels:
        raise ValueError(
            f"images have {channels} channels but MODEL.PIXEL_MEAN/STD have "
            f"{mean.numel()}/{std.numel()} values"
        )
    device = mean.device if isinstance(pixel_mean, torch.Tensor) else clips.device
    clips = clips.to(device=device, dtype=torch.float32)
    mean = mean.to(device).view(1, 1, channels, 1, 1)
    std = std.to(device).view(1, 1, channels, 1, 1)
    return (clips - mean) / std  # out of place: a new tensor


def frame_features(backbone: nn.Module, clips: torch.Tensor,
                   chunk_size: Optional[int] = None) -> torch.Tensor:
    """Apply a 2-D ``backbone`` to each frame of ``clips``.

    Args:
        backbone: maps ``(N, C, H, W)`` to ``(N, C', h, w)``.
        clips: ``(B, T, C, H, W)`` (``(B, C, H, W)`` is read as ``T = 1``).
        chunk_size: run at most this many frames at once (bounds peak memory at test time).
            ``None`` or ``<= 0``: all ``B * T`` frames in one call. Note that in training
            mode BatchNorm statistics are then per chunk, so use chunks at inference.

    Returns:
        ``(B, T, C', h, w)`` frame feature maps.
    """
    clips = as_clips(clips)
    b, t = clips.shape[:2]
    frames = clips.reshape(b * t, *clips.shape[2:])  # (B*T, C, H, W)
    if chunk_size is None or chunk_size <= 0 or chunk_size >= frames.shape[0]:
        maps = backbone(frames)
    else:
        maps = torch.cat([backbone(part) for part in frames.split(chunk_size)], dim=0)
    if maps.dim() != 4:
        raise ValueError(f"the backbone must return (N, C, h, w) maps, got {tuple(maps.shape)}")
    return maps.reshape(b, t, *maps.shape[1:])  # (B, T, C', h, w)


@torch.no_grad()
def feature_map_shape(backbone: nn.Module, input_size: Sequence[int],
                      in_channels: int = 3) -> Tuple[int, int, int]:
    """``(C', h, w)`` of ``backbone`` maps for ``(H, W) = input_size`` inputs.

    Runs one zero image in eval mode (BatchNorm running statistics are not touched) on the
    backbone's device, then restores the previous train/eval mode.
    """
    height, width = int(input_size[0]), int(input_size[1])
    param = next(iter(backbone.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = backbone.training
    backbone.eval()
    try:
        out = backbone(torch.zeros(1, in_channels, height, width, device=device))
    finally:
        backbone.train(was_training)
    if out.dim() != 4:
        raise ValueError(f"the backbone must return (N, C, h, w) maps, got {tuple(out.shape)}")
    return int(out.shape[1]), int(out.shape[2]), int(out.shape[3])


def host_pretrained_url(cfg) -> Optional[str]:
    """The release URL of the ImageNet checkpoint the host's ResNet builder expects for
    ``cfg.MODEL.BACKBONE`` (``model_urls`` of ``fastreid/modeling/backbones/resnet.py:25-35``:
    torchvision for plain ResNets, the IBN-Net releases for ``WITH_IBN``); ``None`` for another
    backbone or a depth without a host URL. The file name ends in the first 8 hex digits of the
    file's SHA-256 (torch.hub's convention)."""
    from fastreid.modeling.backbones import resnet as host_resnet

    if cfg.MODEL.BACKBONE.NAME != "build_resnet_backbone":
        return None
    key = cfg.MODEL.BACKBONE.DEPTH
    if cfg.MODEL.BACKBONE.WITH_IBN:
        key = "ibn_" + key
    if cfg.MODEL.BACKBONE.WITH_SE:
        key = "se_" + key
    return host_resnet.model_urls.get(key)


def _host_resnet_cache_file(cfg) -> Optional[str]:
    """Where the host's ``init_pretrained_weights`` looks for a ResNet checkpoint before
    downloading it (``fastreid/modeling/backbones/resnet.py:250-280``); ``None`` when the
    backbone/depth has no host URL."""
    url = host_pretrained_url(cfg)
    if url is None:
        return None
    torch_home = os.path.expanduser(os.getenv(
        "TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch")))
    return os.path.join(torch_home, "checkpoints", url.split("/")[-1])


def check_pretrained_available(cfg) -> None:
    """Raise ``FileNotFoundError`` if building the backbone would need the network.

    With ``MODEL.BACKBONE.PRETRAIN`` on, ``MODEL.BACKBONE.PRETRAIN_PATH`` must name an
    existing file; an empty path is accepted only for the host ResNet when the host's cached
    checkpoint (``$TORCH_HOME/checkpoints/<name>.pth``) already exists, since otherwise the
    host would download it.
    """
    bb = cfg.MODEL.BACKBONE
    if not bb.PRETRAIN:
        return
    if bb.PRETRAIN_PATH:
        if not os.path.isfile(bb.PRETRAIN_PATH):
            raise FileNotFoundError(
                f"MODEL.BACKBONE.PRETRAIN_PATH={bb.PRETRAIN_PATH!r} does not exist. Put the "
                f"ImageNet checkpoint there (e.g. torchvision's resnet50-19c8e357.pth) or set "
                f"MODEL.BACKBONE.PRETRAIN False."
            )
        return
    cached = _host_resnet_cache_file(cfg)
    if cached is not None and os.path.isfile(cached):
        return
    where = f" and the host cache file {cached} is missing" if cached else ""
    url = host_pretrained_url(cfg)
    get = (f" This config expects {url.split('/')[-1]} ({url}); check it with "
           f"`fastreid-ext check-weights FILE --config-file CONFIG`.") if url else ""
    raise FileNotFoundError(
        f"MODEL.BACKBONE.PRETRAIN is True but MODEL.BACKBONE.PRETRAIN_PATH is empty{where}; "
        f"the host would try to download the weights. Set MODEL.BACKBONE.PRETRAIN_PATH to a "
        f"local checkpoint file or MODEL.BACKBONE.PRETRAIN False.{get}"
    )


def build_backbone_offline(cfg) -> nn.Module:
    """The host's ``build_backbone(cfg)`` after :func:`check_pretrained_available`."""
    from fastreid.modeling.backbones import build_backbone

    check_pretrained_available(cfg)
    return build_backbone(cfg)
