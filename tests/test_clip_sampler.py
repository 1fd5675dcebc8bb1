"""Frame-index properties of the clip samplers (fastreid_ext.data.clip_sampler)."""
import numpy as np
import pytest

import fastreid_ext  # noqa: F401  (compat shims first)
from fastreid_ext.data import clip_sampler as cs

CASES = [(1, 4), (3, 8), (4, 4), (7, 4), (10, 4), (33, 8), (100, 6)]


@pytest.mark.parametrize("n,T", CASES)
def test_restricted_random_one_index_per_chunk(n, T):
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx = cs.restricted_random(n, T, rng)
        assert len(idx) == T
        if n < T:
            assert idx == [t % n for t in range(T)]
            continue
        s = n // T
        for t, i in enumerate(idx):
            lo = t * s
            hi = n if t == T - 1 else (t + 1) * s
            assert lo <= i < hi, (t, i, lo, hi)


def test_restricted_random_reaches_every_frame_of_last_chunk():
    # n = 10, T = 4: chunks of 2, the last chunk is [6, 10).
    rng = np.random.default_rng(1)
    seen = {cs.restricted_random(10, 4, rng)[-1] for _ in range(400)}
    assert seen == {6, 7, 8, 9}


@pytest.mark.parametrize("n,T", CASES)
def test_random_consecutive(n, T):
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(60):
        idx = cs.random_consecutive(n, T, rng)
        assert len(idx) == T and all(0 <= i < n for i in idx)
        # consecutive modulo the loop padding: each step is +1 or wraps to 0 at the end
        for a, b in zip(idx, idx[1:]):
            assert b == a + 1 or (n < T and a == n - 1 and b == 0)
        starts.add(idx[0])
    if n >= T:
        assert starts <= set(range(n - T + 1))
    else:
        assert starts == {0}


def test_random_consecutive_start_uniform_range_covered():
    rng = np.random.default_rng(2)
    assert {cs.random_consecutive(7, 4, rng)[0] for _ in range(300)} == {0, 1, 2, 3}


@pytest.mark.parametrize("n,T", CASES)
def test_evenly(n, T):
    idx = cs.evenly(n, T)
    if n < T:
        assert idx == [t % n for t in range(T)]
    else:
        stride = n // T
        assert idx == list(range(0, stride * T, stride))


@pytest.mark.parametrize("n,T", [(1, 4), (3, 4), (8, 4), (10, 4), (13, 5), (4, 1)])
def test_dense_covers_every_frame_once_in_order(n, T):
    clips = cs.dense_clips(n, T)
    assert len(clips) == -(-n // T)
    assert all(len(c) == T for c in clips)
    flat = [i for c in clips[:-1] for i in c]
    last = clips[-1]
    r = n - T * (len(clips) - 1)  # real frames in the last clip
    assert flat + last[:r] == list(range(n))
    # padding: the last clip's own frames, cycled
    own = last[:r]
    assert last == [own[k % r] for k in range(T)]


@pytest.mark.parametrize("n,T,m", [(100, 4, 5), (40, 4, 10), (41, 4, 10), (1000, 8, 32), (30, 4, 1)])
def test_dense_max_clips_spread_evenly(n, T, m):
    all_clips = cs.dense_clips(n, T)
    kept = cs.dense_clips(n, T, m)
    N = len(all_clips)
    assert len(kept) == min(m, N)
    pos = [all_clips.index(c) for c in kept]
    assert pos == sorted(set(pos))  # distinct, in order
    if m > 1 and N > m:
        assert pos[0] == 0 and pos[-1] == N - 1
        gaps = np.diff(pos)
        assert gaps.max() - gaps.min() <= 1  # evenly spread
    if N <= m:
        assert kept == all_clips


def test_dense_no_limit():
    assert len(cs.dense_clips(1000, 4, 0)) == 250


def test_build_train_clip_sampler():
    assert cs.build_train_clip_sampler("evenly") is cs.evenly
    with pytest.raises(KeyError, match="restricted_random"):
        cs.build_train_clip_sampler("nope")


def test_bad_counts_raise():
    with pytest.raises(ValueError):
        cs.evenly(0, 4)
    with pytest.raises(ValueError):
        cs.dense_clips(5, 0)


@pytest.mark.parametrize("sampler", [cs.restricted_random, cs.random_consecutive, cs.evenly])
def test_short_tracklet_padding_conventions(sampler):
    """n < T: "cycle" repeats the frames in order (jiyanggao), "repeat_last" repeats the last
    frame (deep-person-reid's evenly)."""
    rng = np.random.default_rng(0)
    assert sampler(3, 8, rng) == [0, 1, 2, 0, 1, 2, 0, 1]
    assert sampler(3, 8, rng, pad="cycle") == [0, 1, 2, 0, 1, 2, 0, 1]
    assert sampler(3, 8, rng, pad="repeat_last") == [0, 1, 2, 2, 2, 2, 2, 2]
    built = cs.build_train_clip_sampler(sampler.__name__, "repeat_last")
    assert built(2, 5, rng) == [0, 1, 1, 1, 1]
    with pytest.raises(ValueError, match="SHORT_PAD"):
        cs.build_train_clip_sampler(sampler.__name__, "mirror")


def test_dense_last_clip_padding_conventions():
    assert cs.dense_clips(6, 4) == [[0, 1, 2, 3], [4, 5, 4, 5]]
    assert cs.dense_clips(6, 4, pad="repeat_last") == [[0, 1, 2, 3], [4, 5, 5, 5]]
    assert cs.pad_frames([7], 3, "repeat_last") == [7, 7, 7]
    with pytest.raises(ValueError, match="unknown padding"):
        cs.pad_frames([1, 2], 4, "mirror")
