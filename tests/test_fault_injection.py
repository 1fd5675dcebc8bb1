"""Fault injection: ``kill -9`` at random points of training, feature extraction and index
building (20 points in all), then the next run must resume (or refuse clearly) and no earlier
result may be lost.

To stay fast, the work runs in processes forked from the test process (imports done once) and
is killed with ``SIGKILL`` after a random delay drawn from a seeded generator. After every kill
the files on disk are checked: each one a reader can find is complete and consistent
(``last_checkpoint`` names a loadable checkpoint, the features file and the index load and hold
only finished items with the right embeddings), and what was finished before is still there."""
import json
import multiprocessing as mp
import os
import signal
import time

import cv2
import numpy as np
import pytest
import torch
from conftest import REPO

import fastreid_ext  # noqa: F401  (compat shims first)
from fastreid_ext.config import build_config
from fastreid_ext.deploy import FeaturesFile, GalleryIndex, load_features
from fastreid_ext.deploy.extractor import FeatureExtractor
from fastreid_ext.deploy.inputs import collect_inputs

TINY = os.path.join(REPO, "tests", "configs", "tiny_video.yml")
CTX = mp.get_context("fork")


def _run_and_kill(target, args, delay, ready=None, timeout=300.0):
    """Run ``target(*args)`` in a forked process, ``SIGKILL`` it ``delay`` seconds after
    ``ready()`` first returns true (at once when ``ready`` is None); returns its exit code
    (``-9`` when it was killed, ``0`` when it finished first). Waiting on a progress condition
    rather than on wall time keeps the kills mid-work on a fast and on a loaded machine alike."""
    p = CTX.Process(target=target, args=args)
    p.start()
    start = time.time()
    while ready is not None and p.is_alive() and not ready() and time.time() - start < timeout:
        time.sleep(0.01)
    p.join(delay)
    if p.is_alive():
        os.kill(p.pid, signal.SIGKILL)
    p.join(60)
    return p.exitcode


ERRORS = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"fault_injection_{os.getpid()}.txt")


def _child(fn):
    """Wrap ``fn`` for a forked child: one thread, exit status 1 on an exception (its traceback
    appended to :data:`ERRORS` for the assertion message)."""
    def run(*args):
        torch.set_num_threads(1)
        try:
            fn(*args)
        except BaseException:
            import traceback

            with open(ERRORS, "a") as f:
                traceback.print_exc(file=f)
            os._exit(1)
        os._exit(0)
    return run


def _errors() -> str:
    return open(ERRORS).read()[-3000:] if os.path.exists(ERRORS) else ""


# ---------------------------------------------------------------------------- training
def _train(out, max_epoch):
    from fastreid_ext.engine import Trainer

    cfg = build_config(TINY, ["SOLVER.OPT", "SGD", "SOLVER.MOMENTUM", "0.0", "SOLVER.BASE_LR", "0.01",
                              "SOLVER.IMS_PER_BATCH", "16", "SOLVER.CHECKPOINT_PERIOD", "1",
                              "TEST.EVAL_PERIOD", "2", "SOLVER.MAX_EPOCH", str(max_epoch), "OUTPUT_DIR", out])
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=True)
    trainer.train()


def _checkpoint_epoch(out) -> int:
    """Epoch named by ``last_checkpoint`` (-1 when there is none); no loading, for polling."""
    tag = os.path.join(out, "last_checkpoint")
    try:
        name = open(tag).read().strip()
    except OSError:
        return -1
    digits = "".join(ch for ch in name if ch.isdigit())
    return int(digits) if name.startswith("model_") and digits else -1


def _checkpoint_state(out):
    """``(epoch of the checkpoint named by last_checkpoint, best metric)``; each file a reader
    finds must load."""
    tag = os.path.join(out, "last_checkpoint")
    if not os.path.exists(tag):
        return -1, None
    name = open(tag).read().strip()
    data = torch.load(os.path.join(out, name), map_location="cpu", weights_only=False)  # complete file
    assert "model" in data and "optimizer" in data
    best = os.path.join(out, "model_best.pth")
    best_metric = torch.load(best, map_location="cpu", weights_only=False)["metric"] if os.path.exists(best) else None
    return int(data["epoch"]), best_metric


def test_training_killed_at_random_points_resumes_and_keeps_its_results(tiny_datasets_root, tmp_path, monkeypatch):
    monkeypatch.setenv("FASTREID_DATASETS", tiny_datasets_root)
    out = str(tmp_path / "run")
    os.makedirs(out)
    rng = np.random.default_rng(17)
    max_epoch, last_epoch, last_best, killed = 10, -1, None, 0
    for _ in range(6):
        # kill at a random point shortly after the run has checkpointed one more epoch
        delay = float(rng.uniform(0.0, 0.15))
        target_epoch = last_epoch + 1
        code = _run_and_kill(_child(_train), (out, max_epoch), delay,
                             ready=lambda: _checkpoint_epoch(out) >= target_epoch)
        assert code in (0, -signal.SIGKILL), f"training failed with exit code {code}: {_errors()}"
        killed += code == -signal.SIGKILL
        epoch, best = _checkpoint_state(out)
        print(f"[fault] training  kill after {delay:.2f} s: exit {code}, last checkpoint epoch {epoch}, best {best}")
        assert epoch >= last_epoch, "a resumed run lost checkpointed epochs"
        if last_best is not None:
            assert best is not None and best >= last_best, "model_best.pth was replaced by a worse model"
        if os.path.exists(os.path.join(out, "results.json")):
            res = json.load(open(os.path.join(out, "results.json")))  # complete JSON
            assert res["complete"] is (code == 0 and epoch == max_epoch - 1)
        last_epoch, last_best = epoch, best
    assert killed >= 3
    _child_free_run = CTX.Process(target=_child(_train), args=(out, max_epoch))  # the next run finishes
    _child_free_run.start()
    _child_free_run.join(300)
    assert _child_free_run.exitcode == 0, _errors()
    assert json.load(open(os.path.join(out, "results.json")))["complete"] is True
    assert _checkpoint_state(out)[0] == max_epoch - 1
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")], "temporary files of killed writers were left"


# ---------------------------------------------------------------------------- extraction
@pytest.fixture(scope="module")
def extractor(tmp_path_factory):
    from torch import nn

    from fastreid_ext.engine import Trainer

    cfg = build_config(TINY, ["MODEL.HEADS.NUM_CLASSES", "8"])
    torch.manual_seed(0)
    model = Trainer.build_model(cfg)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("w") / "model.pth"
    torch.save({"model": model.state_dict()}, path)
    return FeatureExtractor.from_files(TINY, str(path), [])


def _items_in(path) -> int:
    """Items in the features file (0 while there is none); for polling."""
    try:
        return len(load_features(path)) if os.path.exists(path) else 0
    except Exception:  # noqa: BLE001  (a reader racing the writer's replace: poll again)
        return 0


def _extract(extractor, items, out):
    # the output is rewritten after every item: many writes for the kills to land in
    extractor.extract(items, out, flush_every=1, flush_seconds=3600, progress=False, batch_size=2, num_workers=0)


def test_extraction_killed_at_random_points_resumes_without_losing_items(extractor, tmp_path):
    rng = np.random.default_rng(0)
    os.makedirs(tmp_path / "imgs")
    for i in range(48):
        assert cv2.imwrite(str(tmp_path / "imgs" / f"{i:03d}.png"), rng.integers(0, 256, (40, 20, 3), dtype=np.uint8))
    items = collect_inputs(str(tmp_path / "imgs"))
    ref, _ = extractor.embed(items)
    ref_by_name = dict(zip(ref.names, ref.embeddings))
    out = str(tmp_path / "feats.npz")
    rng = np.random.default_rng(18)
    done = 0
    for _ in range(7):
        # kill as soon as the file holds a random number of items more than before (it is
        # rewritten after every item), so the kills land mid-extraction on any CPU speed
        target = done + int(rng.integers(1, 6))  # 7 kills of 1-5 items each stay below the 48
        delay = float(rng.uniform(0.0, 0.01))
        code = _run_and_kill(_child(_extract), (extractor, items, out), delay,
                             ready=lambda: _items_in(out) >= target)
        assert code in (0, -signal.SIGKILL), _errors()
        print(f"[fault] extract   kill after {delay:.2f} s: exit {code}, items in the file "
              f"{len(load_features(out)) if os.path.exists(out) else 0} of {len(items)}")
        if not os.path.exists(out):
            assert done == 0
            continue
        feats = load_features(out, expected_hash=extractor.config_hash)
        assert len(feats) >= done, "items finished before were lost"
        for name, emb in zip(feats.names, feats.embeddings):
            np.testing.assert_allclose(emb, ref_by_name[name], atol=1e-5)
        done = len(feats)
    res = extractor.extract(items, out, flush_every=3, progress=False, batch_size=4, num_workers=0)
    assert res.num_resumed == done and len(res.features) == len(items)
    got = dict(zip(res.features.names, res.features.embeddings))
    for name, emb in ref_by_name.items():
        np.testing.assert_allclose(got[name], emb, atol=1e-5)


# ---------------------------------------------------------------------------- index building
def _chunks():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((60, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return [FeaturesFile(x[i:i + 6], [f"g{j:03d}" for j in range(i, i + 6)], "h0", meta={"metric": "cosine"})
            for i in range(0, 60, 6)]


def _indexed(folder) -> int:
    """Items in the committed index; for polling."""
    try:
        return len(GalleryIndex.load(folder))
    except Exception:  # noqa: BLE001  (a reader racing the writer's commit: poll again)
        return 0


def _add_all(folder, chunks):
    for c in chunks:
        GalleryIndex.add_to_folder(folder, [c])
        time.sleep(0.02)


def test_index_building_killed_at_random_points_keeps_a_consistent_index(tmp_path):
    chunks = _chunks()
    folder = str(tmp_path / "idx")
    GalleryIndex.build(chunks[0], "flat").save(folder)
    all_names = [n for c in chunks for n in c.names]
    rng = np.random.default_rng(19)
    count = len(chunks[0])
    for _ in range(7):
        # kill at a random point right after the index has grown by one more chunk
        target = count + 6
        delay = float(rng.uniform(0.0, 0.02))
        code = _run_and_kill(_child(_add_all), (folder, chunks[1:]), delay,
                             ready=lambda: _indexed(folder) >= target)
        assert code in (0, -signal.SIGKILL), _errors()
        index = GalleryIndex.load(folder)  # loads: index file and names match
        print(f"[fault] index add kill after {delay:.2f} s: exit {code}, items indexed {len(index)} of 60")
        assert index.index.ntotal == len(index.names) >= count, "indexed items were lost"
        assert index.names == all_names[:len(index.names)] and len(index.names) % 6 == 0  # whole chunks only
        count = len(index.names)
    _add_all(folder, chunks[1:])  # the next run completes it; chunks already in are skipped
    index = GalleryIndex.load(folder)
    assert index.names == all_names
    x = np.concatenate([c.embeddings for c in chunks])
    np.testing.assert_allclose(index.search(x, k=1).distances[:, 0], 0.0, atol=1e-5)
