"""TEST.IMAGE.AVERAGE_PER_ID: the FGReID paper's image test on per-identity mean embeddings
(fastreid_ext.evaluation.average_per_id), on a hand-worked case."""
import pytest
import torch

import fastreid_ext  # noqa: F401  (compat shims first)
from fastreid_ext.config import build_config
from fastreid_ext.evaluation.average_per_id import IdAveragedEvaluator, average_per_id
from fastreid_ext.evaluation.video_evaluator import VideoClipEvaluator

# query: A (cam 0) at (0, 0) and (2, 0), B (cam 0) at (10, 0)
# gallery (cam 1): A at (1, 1), B at (3, 0) and (11, 0), C at (9.5, 0)
FEATS = torch.tensor([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0],
                      [1.0, 1.0], [3.0, 0.0], [11.0, 0.0], [9.5, 0.0]])
PIDS = [1, 1, 2, 1, 2, 2, 3]
CAMS = [0, 0, 0, 1, 1, 1, 1]


def _evaluate(cls, *opts):
    cfg = build_config("", ["MODEL.DEVICE", "cpu", "TEST.METRIC", "euclidean", *opts])
    ev = cls(cfg, 3, 7, PIDS, CAMS)
    ev.process({"track_idx": torch.arange(7)}, FEATS)
    return ev, ev.evaluate()


def test_per_identity_means_hand_worked():
    # means: query A (1, 0), B (10, 0); gallery A (1, 1), B (7, 0), C (9.5, 0)
    # A: A 1 < B 6 < C 8.5 -> hit at rank 1, AP 1; B: C 0.5 < B 3 -> hit at rank 2, AP 1/2
    ev, res = _evaluate(IdAveragedEvaluator, "TEST.IMAGE.AVERAGE_PER_ID", "True")
    assert res["Rank-1"] == pytest.approx(50.0) and res["mAP"] == pytest.approx(75.0)
    # per image (the standard protocol) the same features give other numbers:
    # q0: A 1.41 < B 3 -> AP 1; q1: B 1 < A 1.41 -> AP 1/2; q2: C .5 < B 1 < B 7 -> AP (1/2 + 2/3) / 2
    _, std = _evaluate(VideoClipEvaluator)
    assert std["Rank-1"] == pytest.approx(100 / 3) and std["mAP"] == pytest.approx(100 * (1 + 0.5 + 7 / 12) / 3)
    # a second evaluation (the trainer's periodic test) starts from the per-image entries again
    ev.reset()
    ev.process({"track_idx": torch.arange(7)}, FEATS)
    assert ev.evaluate()["mAP"] == pytest.approx(75.0)


def test_average_keys():
    feats = torch.tensor([[0.0], [2.0], [4.0], [8.0], [1.0]])
    pids, cams = [5, 5, 5, 5, 6], [0, 1, 0, 2, 2]
    # query rows 0-2 (all identity 5) -> one entry (0 + 2 + 4) / 3; gallery: 5 -> 8, 6 -> 1
    f, nq, p, c = average_per_id(feats, 3, pids, cams, "id")
    assert nq == 1 and f[:, 0].tolist() == [2.0, 8.0, 1.0]
    assert p.tolist() == [5, 5, 6] and c.tolist() == [-1, -2, -2]
    f, nq, p, c = average_per_id(feats, 3, pids, cams, "id_camera")
    # query groups (5, cam 0) {0, 4} -> 2, (5, cam 1) {2}; gallery (5, cam 2) {8}, (6, cam 2) {1}
    assert nq == 2 and f[:, 0].tolist() == [2.0, 2.0, 8.0, 1.0]
    assert p.tolist() == [5, 5, 5, 6] and c.tolist() == [0, 1, 2, 2]
    with pytest.raises(ValueError, match="AVERAGE_KEY"):
        average_per_id(feats, 3, pids, cams, "camera")


def test_option_is_off_by_default():
    cfg = build_config("", [])
    assert cfg.TEST.IMAGE.AVERAGE_PER_ID is False and cfg.TEST.IMAGE.AVERAGE_KEY == "id"
