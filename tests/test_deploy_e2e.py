"""End-to-end deployment loop on the tiny synthetic MARS set: train a tiny model
(tools/train_net.py), extract gallery and query features, build an index, search, and get the
evaluator's numbers back from the search results."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

import fastreid_ext  # noqa: F401  (compat shims first)
from fastreid_ext.config import build_config
from fastreid_ext.deploy import load_features
from fastreid_ext.deploy.cli import build_index_main, extract_main, search_main

TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")
TINY = os.path.join(REPO, "tests", "configs", "tiny_video.yml")


def _write_list(path, items, prefix):
    """``NAME<TAB>frame1,frame2,...`` lines; returns {name: (pid, camid)}."""
    labels = {}
    with open(path, "w") as f:
        for i, it in enumerate(items):
            name = f"{prefix}{i:04d}"
            labels[name] = (int(it[1]), int(it[2]))
            f.write(name + "\t" + ",".join(it[0]) + "\n")
    return labels


def _metrics_from_rankings(rankings, q_labels, g_labels):
    """Cross-camera protocol by hand from ranked gallery names: drop same pid + same camera,
    skip queries without a remaining match; CMC (Rank-1, Rank-5) and mAP (Zheng et al. 2015)."""
    r1, r5, aps = [], [], []
    for qname, ranked in rankings.items():
        qp, qc = q_labels[qname]
        kept = [g for g in ranked if not (g_labels[g][0] == qp and g_labels[g][1] == qc)]
        match = np.array([g_labels[g][0] == qp for g in kept])
        if not match.any():
            continue
        pos = np.flatnonzero(match)
        r1.append(float(pos[0] < 1))
        r5.append(float(pos[0] < 5))
        aps.append(np.mean([(j + 1) / (p + 1) for j, p in enumerate(pos)]))
    return 100 * np.mean(r1), 100 * np.mean(r5), 100 * np.mean(aps)


@pytest.fixture(scope="module")
def trained(tiny_datasets_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("deploy_run")
    env = dict(os.environ, FASTREID_DATASETS=tiny_datasets_root, OMP_NUM_THREADS="1")
    cmd = [sys.executable, TRAIN_NET, "--config-file", TINY, "OUTPUT_DIR", str(out),
           "SOLVER.MAX_EPOCH", "4", "SOLVER.BASE_LR", "0.003", "SOLVER.CHECKPOINT_PERIOD", "100"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd="/")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return str(out / "model_final.pth")


def test_extract_index_search_gives_the_evaluators_rank1(trained, datasets_env, tmp_path):
    from fastreid_ext.data.build import get_dataset
    from fastreid_ext.engine import AtomicCheckpointer, Trainer
    from fastreid_ext.evaluation.inference import inference_on_dataset

    # ---- the evaluator's view (Trainer.test's loader + evaluator)
    cfg = build_config(TINY, ["MODEL.HEADS.NUM_CLASSES", "8", "OUTPUT_DIR", str(tmp_path / "eval")])
    model = Trainer.build_model(cfg)
    AtomicCheckpointer(model).load(trained)
    loader, evaluator = Trainer.build_evaluator(cfg, "SyntheticMARS")
    expected = inference_on_dataset(model, loader, evaluator, flip_test=cfg.TEST.FLIP.ENABLED)
    eval_feats = evaluator.tracklet_features().numpy()

    data = get_dataset(cfg, "SyntheticMARS")
    q_labels = _write_list(tmp_path / "query.txt", data.query, "q")
    g_labels = _write_list(tmp_path / "gallery.txt", data.gallery, "g")
    Q, G = len(q_labels), len(g_labels)

    # ---- the deployment loop through the tools' command lines
    model_args = ["--config-file", TINY, "--weights", trained]
    extract_main(["--input", str(tmp_path / "gallery.txt"), "--output", str(tmp_path / "gallery.npz"),
                  "--no-progress", *model_args])
    extract_main(["--input", str(tmp_path / "query.txt"), "--output", str(tmp_path / "query.npz"),
                  "--no-progress", *model_args])
    build_index_main(["--features", str(tmp_path / "gallery.npz"), "--index", str(tmp_path / "index")])
    search_main(["--index", str(tmp_path / "index"), "--query-features", str(tmp_path / "query.npz"),
                 "-k", str(G), "--format", "json", "--output", str(tmp_path / "res.json"),
                 "--rank-png", str(tmp_path / "png")])

    # same embeddings as the evaluator's tracklet features (same clips, same averaging)
    qf, gf = load_features(str(tmp_path / "query.npz")), load_features(str(tmp_path / "gallery.npz"))
    assert qf.names == sorted(q_labels) and gf.names == sorted(g_labels)
    np.testing.assert_allclose(qf.embeddings, eval_feats[:Q], atol=2e-5)
    np.testing.assert_allclose(gf.embeddings, eval_feats[Q:], atol=2e-5)

    with open(tmp_path / "res.json") as f:
        res = json.load(f)["results"]
    assert len(res) == Q and all(len(r["matches"]) == G for r in res)
    for r in res:  # ranked by increasing distance
        d = [m["distance"] for m in r["matches"]]
        assert d == sorted(d)
    rankings = {r["query"]: [m["name"] for m in r["matches"]] for r in res}
    rank1, rank5, mAP = _metrics_from_rankings(rankings, q_labels, g_labels)
    assert rank1 == pytest.approx(expected["Rank-1"], abs=1e-6)
    assert rank5 == pytest.approx(expected["Rank-5"], abs=1e-6)
    assert mAP == pytest.approx(expected["mAP"], abs=1e-4)
    assert len(os.listdir(tmp_path / "png")) == Q

    # a query given as frames (embedded by search.py itself) gets the same answer as its
    # extracted features
    one = tmp_path / "one_query.txt"
    one.write_text("q0000\t" + ",".join(data.query[0][0]) + "\n")
    _, direct = search_main(["--index", str(tmp_path / "index"), "--query", str(one), "-k", "5",
                             *model_args])
    assert [n for n, _ in direct[0]] == rankings["q0000"][:5]


def test_search_refuses_a_model_other_than_the_index(trained, datasets_env, tmp_path):
    from fastreid_ext.data.build import get_dataset
    from fastreid_ext.deploy import ConfigHashMismatch

    cfg = build_config(TINY)
    data = get_dataset(cfg, "SyntheticMARS")
    _write_list(tmp_path / "gallery.txt", data.gallery[:6], "g")
    _write_list(tmp_path / "query.txt", data.query[:2], "q")
    model_args = ["--config-file", TINY, "--weights", trained]
    extract_main(["--input", str(tmp_path / "gallery.txt"), "--output", str(tmp_path / "g.npz"),
                  "--no-progress", *model_args])
    build_index_main(["--features", str(tmp_path / "g.npz"), "--index", str(tmp_path / "idx")])
    # same weights, another test input size: another embedding model
    other = model_args + ["INPUT.SIZE_TEST", "[48, 24]"]
    with pytest.raises(ConfigHashMismatch) as e:
        search_main(["--index", str(tmp_path / "idx"), "--query", str(tmp_path / "query.txt"), *other])
    assert "config hash" in str(e.value)
