"""ONNX export of the embedding model of any registered meta-architecture.

The exported graph is the model's eval forward as one graph::

    images (B, T, 3, H, W) float32, values 0..255  ->  embeddings (B, D)

plus ``keypoints (B, T, 17, 3)`` (``x, y`` in ``[0, 1]`` of the frame, ``v``) as a second
input only for a model whose test embedding reads them (its ``export_inputs()`` hook, e.g. a
pose-guided stream among a model's test streams). Adaptive pooling is exported as
its fixed-size equivalent for the export's frame size (:func:`fixed_size_adaptive_pooling`).

i.e. pixel normalisation, the per-frame backbone, the temporal aggregation and the head
together (an image model is the same graph with ``T = 1``). ``H, W`` are fixed to
``INPUT.SIZE_TEST``. ``B`` and ``T`` are dynamic axes when the traced graph stays correct for
other sizes: :func:`export_from_files` tries dynamic ``(B, T)``, then dynamic ``B`` with ``T``
fixed, then a fully static graph, and keeps the first whose onnxruntime outputs match PyTorch
on inputs of other dynamic sizes (a model whose code turns a size into a Python number gets a
graph that silently assumes the example's size, e.g. a clip length ``T`` read from a shape). The embedding is the per-clip one: averaging the clips
of a tracklet and the L2 normalisation stay outside the graph, as in the evaluator
(:mod:`fastreid_ext.deploy.extractor`).

The exporter is ``torch.onnx.export(dynamo=True)`` when ``onnxscript`` is installed, the
TorchScript-based exporter otherwise. :func:`check_onnx` compares onnxruntime's outputs with
PyTorch's on inputs of another batch size and clip length than the export example (when
``onnxruntime``, an optional dependency, is installed).
"""
from __future__ import annotations

import contextlib
import copy
import importlib.util
import logging
import os
import warnings
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["EmbeddingGraph", "ExportResult", "export_onnx", "check_onnx", "onnxruntime_available",
           "export_from_files", "export_inputs", "example_inputs", "fixed_size_adaptive_pooling"]

logger = logging.getLogger(__name__)


def onnxruntime_available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def export_inputs(model: nn.Module) -> Tuple[str, ...]:
    """The batch keys the eval forward of ``model`` reads: ``("images",)``, or what the
    meta-architecture's ``export_inputs()`` hook returns (e.g. ``("images", "keypoints")`` for a
    model whose test embedding uses pose keypoints)."""
    hook = getattr(model, "export_inputs", None)
    names = tuple(hook()) if callable(hook) else ("images",)
    unknown = set(names) - {"images", "keypoints"}
    if names[:1] != ("images",) or unknown:
        raise ValueError(f"{type(model).__name__}.export_inputs() must start with 'images' and name only "
                         f"'images' / 'keypoints', got {names}")
    return names


def example_inputs(names: Sequence[str], images: torch.Tensor, seed: int = 0) -> Tuple[torch.Tensor, ...]:
    """``images`` and, when ``names`` asks for them, keypoints ``(B, T, 17, 3)`` for it: joints
    at seeded random positions in ``[0.1, 0.9]`` of the frame, all visible."""
    out = [images]
    if "keypoints" in names:
        g = torch.Generator().manual_seed(seed)
        xy = 0.1 + 0.8 * torch.rand(*images.shape[:2], 17, 2, generator=g)
        out.append(torch.cat([xy, torch.ones(*images.shape[:2], 17, 1)], dim=-1))
    return tuple(out)


class EmbeddingGraph(nn.Module):
    """``images (B, T, C, H, W)[, keypoints (B, T, 17, 3)] -> model({...})``: the eval forward
    of a meta-architecture as a tensor-in / tensor-out module (always in eval mode), taking
    only the inputs the model's eval forward reads (:func:`export_inputs`)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.inputs = export_inputs(model)
        self.eval()

    def train(self, mode: bool = True):  # noqa: D401 - an export graph never trains
        return super().train(False)

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model(dict(zip(self.inputs, tensors)))


def _bins(n: int, m: int) -> List[Tuple[int, int]]:
    """The ``[start, end)`` input rows of each of ``m`` adaptive-pooling cells over ``n`` rows:
    ``floor(i n / m)`` to ``ceil((i + 1) n / m)`` (PyTorch's adaptive pooling)."""
    return [(i * n // m, -(-(i + 1) * n // m)) for i in range(m)]


def _fixed_adaptive(original, reduce):
    def pool(x, output_size, return_indices=False, *args, **kwargs):
        if return_indices or args or kwargs:
            return original(x, output_size, return_indices, *args, **kwargs)
        h, w = int(x.shape[-2]), int(x.shape[-1])
        oh, ow = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
        oh, ow = h if oh is None else int(oh), w if ow is None else int(ow)
        rows = [torch.stack([reduce(x[..., h0:h1, w0:w1]) for w0, w1 in _bins(w, ow)], dim=-1)
                for h0, h1 in _bins(h, oh)]
        return torch.stack(rows, dim=-2)
    return pool


@contextlib.contextmanager
def fixed_size_adaptive_pooling():
    """While exporting: ``F.adaptive_avg_pool2d`` / ``F.adaptive_max_pool2d`` (and the modules
    built on them) as explicit slices over the cells of the traced input size, which every
    opset can express (the exporter refuses adaptive pooling whose output does not divide the
    input, or whose input size it cannot see). The graph is then fixed to the export's frame
    size ``H, W`` (``INPUT.SIZE_TEST``), as it is anyway."""
    avg, mx = F.adaptive_avg_pool2d, F.adaptive_max_pool2d
    F.adaptive_avg_pool2d = _fixed_adaptive(avg, lambda t: t.mean(dim=(-2, -1)))
    F.adaptive_max_pool2d = _fixed_adaptive(mx, lambda t: t.amax(dim=(-2, -1)))
    try:
        yield
    finally:
        F.adaptive_avg_pool2d, F.adaptive_max_pool2d = avg, mx


@dataclass
class ExportResult:
    path: str
    input_shape: Tuple[int, ...]  # the example the graph was traced with
    exporter: str  # "dynamo" or "torchscript"
    max_abs_diff: Optional[float]  # onnxruntime vs PyTorch; None when not checked
    dynamic_axes: Tuple[int, ...] = (0, 1)  # 0: batch, 1: frames


def _exporter() -> str:
    return "dynamo" if importlib.util.find_spec("onnxscript") is not None else "torchscript"


def export_onnx(model: nn.Module, path: str, input_shape: Sequence[int], opset: Optional[int] = None,
                dynamic_axes: Sequence[int] = (0, 1)) -> str:
    """Export ``EmbeddingGraph(model)`` to ``path`` with an example input of ``input_shape``
    ``(B, T, C, H, W)``; ``dynamic_axes`` among 0 (``B``) and 1 (``T``). Returns the exporter
    used. Raises ``RuntimeError`` naming the meta-architecture when the model cannot be exported."""
    if len(input_shape) != 5:
        raise ValueError(f"input_shape must be (B, T, C, H, W), got {tuple(input_shape)}")
    if not set(dynamic_axes) <= {0, 1}:
        raise ValueError(f"dynamic_axes must be among 0 (batch) and 1 (frames), got {tuple(dynamic_axes)}")
    graph = EmbeddingGraph(copy.deepcopy(model)).to("cpu")  # the caller's (CUDA) model stays as it is
    example = example_inputs(graph.inputs, torch.rand(*input_shape) * 255.0)
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    exporter = _exporter()
    kwargs = dict(input_names=list(graph.inputs), output_names=["embeddings"])
    if opset is not None:
        kwargs["opset_version"] = opset
    try:
        with warnings.catch_warnings(), fixed_size_adaptive_pooling():
            warnings.simplefilter("ignore")
            if exporter == "dynamo":
                # B, T >= 2 in the example: torch.export specialises size-1 dimensions
                names = {0: "batch", 1: "frames"}
                dims = {a: torch.export.Dim(names[a]) for a in dynamic_axes}
                torch.onnx.export(graph, example, path, dynamic_shapes=tuple(dims for _ in graph.inputs) if dims else None,
                                  dynamo=True, **kwargs)
            else:
                axes = {n: {a: ("batch", "frames")[a] for a in dynamic_axes} for n in graph.inputs}
                if 0 in dynamic_axes:
                    axes["embeddings"] = {0: "batch"}
                torch.onnx.export(graph, example, path, dynamo=False, dynamic_axes=axes, **kwargs)
    except Exception as e:
        raise RuntimeError(f"ONNX export ({exporter}) of {type(model).__name__} failed: {e}") from e
    logger.info("exported %s to %s (%s exporter, example %s)", type(model).__name__, path, exporter, tuple(input_shape))
    return exporter


def check_onnx(path: str, model: nn.Module, inputs: torch.Tensor, atol: float = 1e-4, rtol: float = 1e-3) -> Optional[float]:
    """Run ``path`` with onnxruntime (CPU) and ``model`` with PyTorch on ``inputs``
    ``(B, T, C, H, W)`` (and seeded keypoints when the model reads them); return the largest absolute difference, raise ``AssertionError`` when
    outside ``atol + rtol * |torch|``. ``None`` (logged) when onnxruntime is not installed."""
    if not onnxruntime_available():
        logger.warning("onnxruntime is not installed (pip install onnxruntime): the ONNX graph was not checked")
        return None
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    graph = EmbeddingGraph(copy.deepcopy(model)).to("cpu")
    tensors = example_inputs(graph.inputs, inputs.detach().cpu().float(), seed=1)
    got = sess.run(None, {n: t.numpy() for n, t in zip(graph.inputs, tensors)})[0]
    with torch.no_grad():
        ref = graph(*tensors).numpy()
    if got.shape != ref.shape:
        raise AssertionError(f"ONNX output shape {got.shape} != PyTorch {ref.shape}")
    diff = np.abs(got - ref)
    bad = diff > atol + rtol * np.abs(ref)
    if bad.any():
        raise AssertionError(f"ONNX and PyTorch embeddings differ: max |diff| {diff.max():.3g} "
                             f"on {int(bad.sum())} of {bad.size} values")
    return float(diff.max())


def export_from_files(config_file: str, weights: str, output: str, opts: Sequence[str] = (),
                      seq_len: Optional[int] = None, batch: int = 2, opset: Optional[int] = None,
                      check: bool = True) -> ExportResult:
    """Config + weights -> ``output`` ONNX file, checked against PyTorch on a batch of another
    size (``batch + 1`` clips of ``seq_len + 1`` frames) when onnxruntime is installed."""
    from .extractor import FeatureExtractor

    if os.path.isdir(output):
        raise ValueError(f"--output {output!r} is a folder; name the .onnx file, e.g. "
                         f"{os.path.join(output, 'model.onnx')!r}")
    ext = FeatureExtractor.from_files(config_file, weights, opts)
    model = ext.model.to("cpu").eval()
    cfg = ext.cfg
    h, w = cfg.INPUT.SIZE_TEST
    t = int(seq_len or cfg.TEST.VIDEO.SEQ_LEN)
    shape = (max(2, batch), max(2, t), 3, int(h), int(w))
    if not check or not onnxruntime_available():
        exporter = export_onnx(model, output, shape, opset)
        if check:
            check_onnx(output, model, torch.zeros(shape))  # logs that nothing was checked
        return ExportResult(output, shape, exporter, None)
    last = None
    for axes in ((0, 1), (0,), ()):
        torch.manual_seed(0)
        probe = list(shape)
        for a in axes:
            probe[a] += 1  # other sizes on the dynamic axes
        try:  # an export that cannot trace a dynamic axis, or a graph wrong for other sizes
            exporter = export_onnx(model, output, shape, opset, axes)
            diff = check_onnx(output, model, torch.rand(*probe) * 255.0)
            if axes != (0, 1):
                logger.warning("%s: the graph is only correct with %s; exported with dynamic axes %s (%s)",
                               type(model).__name__, "B, T fixed" if not axes else "T fixed",
                               [("batch", "frames")[a] for a in axes], last)
            return ExportResult(output, shape, exporter, diff, tuple(axes))
        except Exception as e:  # wrong results or a runtime shape error for other sizes
            last = f"dynamic axes {axes}: {str(e).splitlines()[0][:300]}"
            logger.info("ONNX check failed with %s", last)
    raise RuntimeError(f"the ONNX graph of {type(model).__name__} does not match PyTorch even with static "
                       f"shapes: {last}")
