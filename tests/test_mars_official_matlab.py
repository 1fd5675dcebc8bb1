"""``mars_official`` against a port of the MARS authors' MATLAB evaluation.

The port below is written from the published text of ``evaluation_mars.m`` and
``utils/compute_AP.m`` (MARS-evaluation repository), line by line and with MATLAB's 1-based
indices, one query at a time; it shares no code with :mod:`fastreid_ext.evaluation.rank`.
"""
import numpy as np
import pytest
import torch

import fastreid_ext  # noqa: F401
from fastreid_ext.evaluation import evaluate_rank
from fastreid_ext.evaluation.distance import host_distance_rows
from fastreid_ext.evaluation.metrics_from_features import evaluate_features


def compute_AP(good_image, junk_image, index):
    """``[ap, cmc] = compute_AP(good_image, junk_image, index)`` (``index``: 1-based ranked
    gallery indices)."""
    cmc = np.zeros(len(index))
    ngood = len(good_image)
    old_recall, old_precision, ap = 0.0, 1.0, 0.0
    intersect_size, j, good_now, njunk = 0, 0, 0, 0
    good, junk = set(good_image), set(junk_image)
    for n in range(1, len(index) + 1):
        flag = 0
        if index[n - 1] in good:
            cmc[n - njunk - 1:] = 1  # cmc(n-njunk:end) = 1
            flag = 1
            good_now += 1
        if index[n - 1] in junk:
            njunk += 1
            continue
        if flag == 1:
            intersect_size += 1
        recall = intersect_size / ngood
        precision = intersect_size / (j + 1)
        ap = ap + (recall - old_recall) * ((old_precision + precision) / 2)
        old_recall, old_precision = recall, precision
        j += 1
        if good_now == ngood:
            return ap, cmc
    return ap, cmc


def evaluation_mars(dist, label_gallery, label_query, cam_gallery, cam_query):
    """The per-query loop of ``evaluation_mars.m`` (``dist``: gallery x query, as there)."""
    aps, cmcs = [], []
    for i in range(len(label_query)):
        same = label_gallery == label_query[i]
        good_index = np.flatnonzero(same & (cam_gallery != cam_query[i])) + 1
        junk_index1 = np.flatnonzero(label_gallery == -1) + 1
        junk_index2 = np.flatnonzero(same & (cam_gallery == cam_query[i])) + 1
        junk_index = np.concatenate([junk_index1, junk_index2])
        score = dist[:, i]
        index = np.argsort(score, kind="stable") + 1  # [~, index] = sort(score, 'ascend')
        ap, cmc = compute_AP(good_index, junk_index, index)
        aps.append(ap)
        cmcs.append(cmc)
    return np.mean(aps), np.mean(cmcs, axis=0), np.asarray(aps)


def _random_case(rng, n_ids, n_gallery, n_query, levels):
    """Integer-valued distances (``levels`` distinct values: many ties), junk (pid -1),
    distractor ids without a query, same-camera items; every query has a match."""
    g_pids = rng.integers(0, n_ids, n_gallery)
    g_pids[rng.random(n_gallery) < 0.15] = -1
    g_cams = rng.integers(0, 3, n_gallery)
    labelled = np.flatnonzero(g_pids >= 0)
    qi = rng.choice(labelled, size=min(n_query, len(labelled)), replace=False)
    q_pids, q_cams = g_pids[qi], g_cams[qi]
    ok = np.array([np.any((g_pids == p) & (g_cams != c)) for p, c in zip(q_pids, q_cams)])
    q_pids, q_cams = q_pids[ok], q_cams[ok]
    d = rng.integers(0, levels, (len(q_pids), n_gallery)).astype(np.float64)
    return d, q_pids, g_pids, q_cams, g_cams


@pytest.mark.parametrize("case", range(24))
def test_mars_official_equals_the_matlab_script(case):
    rng = np.random.default_rng(case)
    levels = (3, 8, 50, 10**6)[case % 4]  # from heavy ties to (almost) none
    d, qp, gp, qc, gc = _random_case(rng, n_ids=6 + case, n_gallery=40 + 3 * case, n_query=12, levels=levels)
    assert len(qp) > 0
    res = evaluate_rank(d, qp, gp, qc, gc, max_rank=len(gp), protocol="mars_official")
    ref_map, ref_cmc, ref_ap = evaluation_mars(d.T, gp, qp, gc, qc)
    assert res.num_valid == len(qp)
    np.testing.assert_allclose(res.all_AP, ref_ap, rtol=0, atol=1e-9)
    assert abs(res.mAP - ref_map) <= 1e-9
    # CMC is float32 like the host's; the script's CMC rows are 0/1, so equal up to float32
    np.testing.assert_allclose(res.cmc, ref_cmc[: len(res.cmc)], rtol=0, atol=1e-6)


def test_hand_worked_trapezoid():
    """One match at kept rank 2: the script gives (0 + 1/2) / 2 = 0.25, the mean of i / r_i
    gives 0.5. Two matches at kept ranks 2 and 4: (1/4 + (1/3 + 2/4) / 2) / 2 = 1/3."""
    gp = np.array([0, 1, 0, 1, 1])
    gc = np.array([1, 1, 1, 1, 1])
    d = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
    res = evaluate_rank(d[:, :2], [1], gp[:2], [0], gc[:2], max_rank=2, protocol="mars_official")
    assert res.all_AP[0] == pytest.approx(0.25, abs=1e-12)
    res = evaluate_rank(d[:, :2], [1], gp[:2], [0], gc[:2], max_rank=2, protocol="mars_official_noninterp")
    assert res.all_AP[0] == pytest.approx(0.5, abs=1e-12)
    res = evaluate_rank(d[:, :4], [1], gp[:4], [0], gc[:4], max_rank=4, protocol="mars_official")
    assert res.all_AP[0] == pytest.approx(1 / 3, abs=1e-12)


def test_ties_keep_gallery_order():
    """A match tied with a non-match: the script's stable sort puts the earlier gallery item
    first, so the match at column 0 is at rank 1 and the one at column 1 at rank 2."""
    d = np.array([[0.5, 0.5]])
    first = evaluate_rank(d, [1], [1, 0], [0], [1, 1], max_rank=2, protocol="mars_official")
    second = evaluate_rank(d, [1], [0, 1], [0], [1, 1], max_rank=2, protocol="mars_official")
    assert first.all_AP[0] == pytest.approx(1.0) and first.cmc.tolist() == [1.0, 1.0]
    assert second.all_AP[0] == pytest.approx(0.25) and second.cmc.tolist() == [0.0, 1.0]


def test_features_path_equals_the_matlab_script():
    """The memory-bounded feature path (what the evaluator runs) scores like the script."""
    rng = np.random.default_rng(7)
    g = rng.normal(size=(60, 8)).astype(np.float32)
    gp = rng.integers(0, 10, 60)
    gp[:8] = -1
    gc = rng.integers(0, 3, 60)
    qi = np.flatnonzero(gp >= 0)[:15]
    q, qp, qc = g[qi] + 0.3 * rng.normal(size=(15, 8)).astype(np.float32), gp[qi], gc[qi]
    ok = np.array([np.any((gp == p) & (gc != c)) for p, c in zip(qp, qc)])
    q, qp, qc = q[ok], qp[ok], qc[ok]
    res = evaluate_features(q, g, qp, gp, qc, gc, metric="euclidean", max_rank=20, protocol="mars_official")
    d = host_distance_rows(torch.from_numpy(q), torch.from_numpy(g), "euclidean").numpy().astype(np.float64)
    ref_map, ref_cmc, _ = evaluation_mars(d.T, gp, qp, gc, qc)
    assert abs(res.mAP - ref_map) <= 1e-6  # float32 distances: same ranking, same AP
    np.testing.assert_allclose(res.cmc, ref_cmc[:20], atol=1e-6)
