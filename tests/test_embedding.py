"""The one path from clips to tracklet embeddings (fastreid_ext.evaluation.embedding): clip
means against a float64 recomputation, the L2 decision of each metric, the flip average, and
the evaluator and the deployment extractor giving the same embeddings through it."""
import numpy as np
import pytest
import torch
from torch import nn

import fastreid_ext  # noqa: F401  (compat shims first)
from fastreid_ext.evaluation.embedding import (
    clip_embeddings,
    l2_normalized,
    model_inputs,
    tracklet_means,
    uses_l2,
)


def test_tracklet_means_are_the_float64_clip_means():
    g = torch.Generator().manual_seed(0)
    clips = torch.randn(7, 5, generator=g, dtype=torch.float64)
    owner = [0, 0, 1, 2, 2, 2, 1]
    sums = torch.zeros(3, 5, dtype=torch.float64).index_add_(0, torch.tensor(owner), clips)
    got = tracklet_means(sums, torch.tensor([2, 2, 3]))
    ref = np.stack([clips.numpy()[[i for i, o in enumerate(owner) if o == t]].mean(0) for t in range(3)])
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-6)


def test_tracklet_means_refuse_empty_tracklets_and_non_finite_values():
    with pytest.raises(ValueError, match=r"1 of 3 tracklets received no clip \(first: \[1\]\)"):
        tracklet_means(torch.ones(3, 2, dtype=torch.float64), torch.tensor([1, 0, 2]))
    sums = torch.ones(3, 2, dtype=torch.float64)
    sums[2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite values: 1 NaN and 0 inf entries in 1 of 3 tracklets"):
        tracklet_means(sums, torch.tensor([1, 1, 1]))


def test_only_the_cosine_metric_normalises():
    assert uses_l2("cosine") and not uses_l2("euclidean")
    x = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    np.testing.assert_allclose(l2_normalized(x, True).numpy(), [[0.6, 0.8], [0.0, 1.0]], rtol=1e-6)
    assert l2_normalized(x, False) is x


class _Proj(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(3 * 2 * 4, 5, generator=torch.Generator().manual_seed(1)))

    def forward(self, batch):
        x = batch["images"]
        x.sub_(1.0)  # an in-place change, like the host's normalisation: must reach no other input
        return x.flatten(1) @ self.w


def test_flip_average_of_untouched_inputs():
    images = torch.rand(2, 3, 2, 4) * 255
    pristine = images.clone()
    model = _Proj()
    with torch.no_grad():
        got = clip_embeddings(model, model_inputs({"images": images}, torch.device("cpu"), flip=True))
        plain = clip_embeddings(model, model_inputs({"images": images}, torch.device("cpu")))
    w = model.w.detach().double()
    x = pristine.double() - 1.0
    ref = ((x.flatten(1) @ w) + (x.flip(-1).flatten(1) @ w)) / 2
    torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(plain.double(), x.flatten(1) @ w, rtol=1e-5, atol=1e-3)
    assert torch.equal(images, pristine)  # the caller's batch is never modified
