#!/usr/bin/env python
"""Reliability probes, round two (``docs/reliability.md``): each probe runs a tool as a user
would (a damaged or mismatched input, a reused folder, a changed setting) and prints one line
``ID | what it saw``; the verdicts are in the docs. Not a test: it prints, and takes minutes.

    python benchmarks/reliability_probes.py [--workdir DIR] [ID ...]      # all probes, or some

It generates the tiny synthetic MARS set of ``tests/conftest.py`` and trains one 1-epoch run
of ``tests/configs/tiny_video.yml`` that the engine probes copy.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

W = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
T = f"{W}/tests/configs/tiny_video.yml"
_args = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
_args.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "fastreid_ext_probes"))
_args.add_argument("ids", nargs="*")
ARGS = _args.parse_args()
P = os.path.abspath(ARGS.workdir)
DS = os.path.join(P, "datasets")
PATHS = [W] + [os.path.join(W, "projects", p) for p in ("FGReID", "MGRAFA", "MGRe", "FGPose")]
ENV = dict(os.environ, FASTREID_DATASETS=DS, OMP_NUM_THREADS="1",
           PYTHONPATH=os.pathsep.join(PATHS + [os.environ.get("PYTHONPATH", "")]))
os.makedirs(P, exist_ok=True)
if not os.path.isdir(os.path.join(DS, "synthetic", "mars")):
    sys.path.insert(0, os.path.join(W, "tests"))
    from conftest import TINY_MARS  # noqa: E402

    from fastreid_ext.data.synthetic import generate  # noqa: E402

    params = dict(TINY_MARS)
    generate(params.pop("layout"), os.path.join(DS, "synthetic", "mars"), workers=1, **params)
only = set(ARGS.ids)

def run(args, env=ENV, timeout=600):
    p = subprocess.run([PY, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=P)
    err = [l for l in p.stderr.splitlines() if l.startswith("error:") or "Error" in l]
    return p.returncode, (err[-1] if err else (p.stderr.strip().splitlines() or [""])[-1])[:300], p

def train(out, *extra, flags=()):
    return run([f"{W}/tools/train_net.py", "--config-file", T, *flags, "SOLVER.MAX_EPOCH", "1", *extra, "OUTPUT_DIR", out])

def digests(d):
    return {n: hashlib.sha256(open(os.path.join(d, n), "rb").read()).hexdigest() for n in sorted(os.listdir(d))
            if os.path.isfile(os.path.join(d, n)) and not n.endswith(".lock") and not n.startswith("events")}

def fresh(name):
    d = os.path.join(P, name)
    shutil.rmtree(d, ignore_errors=True)
    for x in os.listdir(P):
        if x.startswith(name + ".old-"):
            shutil.rmtree(os.path.join(P, x))
    return d

def base_copy(name):
    d = fresh(name)
    shutil.copytree(os.path.join(P, "base"), d, ignore=shutil.ignore_patterns("*.lock"))
    return d

def say(pid, text):
    print(f"{pid} | {text}", flush=True)

if not os.path.isdir(os.path.join(P, "base")):
    rc, msg, _ = train(os.path.join(P, "base"))
    assert rc == 0, msg

def want(pid):
    return not only or pid in only

if want("E1"):
    rc, msg, _ = run([f"{W}/tools/train_net.py", "--config-file", T, "--resume", "--overwrite", "OUTPUT_DIR", base_copy("e1")])
    say("E1", f"--resume --overwrite: rc {rc}: {msg}")
if want("E2"):
    d = fresh("e2"); rc, msg, _ = train(d, flags=("--overwrite",))
    say("E2", f"--overwrite on a new folder: rc {rc}, aside folders: {[x for x in os.listdir(P) if x.startswith('e2.old')]}")
if want("E3"):
    d = base_copy("e3"); train(d, flags=("--overwrite",)); rc, msg, _ = train(d, flags=("--overwrite",))
    olds = sorted(x for x in os.listdir(P) if x.startswith("e3.old"))
    say("E3", f"--overwrite twice: rc {rc}, {len(olds)} aside folders, each with model_final.pth: "
              f"{all(os.path.isfile(os.path.join(P, o, 'model_final.pth')) for o in olds)}")
if want("E4"):
    d = fresh("e4"); rc, msg, p = train(d, flags=("--resume",))
    say("E4", f"--resume in an empty folder: rc {rc}, trained from scratch: {os.path.isfile(os.path.join(d, 'model_final.pth'))}")
if want("E5"):
    d = base_copy("e5"); rc, msg, p = train(d, "SOLVER.MAX_EPOCH", "2", "TEST.EVAL_PERIOD", "1", flags=("--resume",))
    line = [l for l in p.stdout.splitlines() + p.stderr.splitlines() if "changed setting" in l]
    say("E5", f"--resume MAX_EPOCH 2, EVAL_PERIOD 1: rc {rc}; {line[0].split(']: ')[-1][:200] if line else 'no list logged'}")
if want("E6"):
    d = os.path.join(P, "e6file"); open(d, "w").write("x")
    rc, msg, _ = train(d); say("E6", f"OUTPUT_DIR is a file: rc {rc}: {msg}")
if want("E7"):
    d = base_copy("e7"); os.remove(os.path.join(d, "config.yaml"))
    rc, msg, p = train(d, "SOLVER.MAX_EPOCH", "2", "SOLVER.BASE_LR", "0.01", flags=("--resume",))
    line = [l for l in p.stderr.splitlines() + p.stdout.splitlines() if "learning rates now follow" in l or "no config.yaml" in l]
    say("E7", f"--resume without the run's config.yaml, BASE_LR changed: rc {rc}; {' / '.join(x.split(']: ')[-1][:120] for x in line)}")
if want("E8"):
    d = base_copy("e8"); open(os.path.join(d, "config.yaml"), "w").write("MODEL: [unclosed\n")
    before = digests(d); rc, msg, _ = train(d, flags=("--resume",))
    say("E8", f"--resume with a garbage config.yaml: rc {rc}: {msg}; files unchanged: {digests(d) == before}")
if want("E9"):
    d = base_copy("e9"); open(os.path.join(d, "last_checkpoint"), "w").write("model_9999.pth")
    rc, msg, p = train(d, "SOLVER.MAX_EPOCH", "2", flags=("--resume",))
    w = [l for l in p.stderr.splitlines() + p.stdout.splitlines() if "instead of" in l]
    say("E9", f"last_checkpoint names a missing file: rc {rc}; {w[0].split(']: ')[-1][:160] if w else msg}")
if want("E10"):
    d = base_copy("e10"); open(os.path.join(d, "last_checkpoint"), "w").write("")
    rc, msg, p = train(d, "SOLVER.MAX_EPOCH", "2", flags=("--resume",))
    w = [l for l in p.stderr.splitlines() + p.stdout.splitlines() if "damaged" in l or "Starting training from epoch" in l]
    say("E10", f"empty last_checkpoint: rc {rc}; {' / '.join(x.split(']: ')[-1][:100] for x in w) or msg}")
if want("E11"):
    rc, msg, _ = run([f"{W}/tools/train_net.py", "--config-file", T, "--eval-only", "MODEL.WEIGHTS", P, "OUTPUT_DIR", fresh("e11")])
    say("E11", f"--eval-only with MODEL.WEIGHTS a folder: rc {rc}: {msg}")
if want("E12"):
    rc, msg, _ = run([f"{W}/tools/train_net.py", "--config-file", T, "--eval-only", "MODEL.WEIGHTS",
                      os.path.join(P, "base", "results.json"), "OUTPUT_DIR", fresh("e12")])
    say("E12", f"--eval-only with a results.json as weights: rc {rc}: {msg}")
if want("E13"):
    d = base_copy("e13"); before = digests(d)
    rc, msg, _ = train(d, "MODEL.HEADS.NUM_CLASSES", "5", flags=("--resume",))
    say("E13", f"--resume with MODEL.HEADS.NUM_CLASSES 5 (run: 8): rc {rc}: {msg}; unchanged: {digests(d) == before}")
if want("E14"):
    d = base_copy("e14"); before = digests(d)
    rc, msg, _ = train(d, "SOLVER.IMS_PER_BATCH", "4", flags=("--resume",))
    say("E14", f"--resume with another IMS_PER_BATCH: rc {rc}: {msg[:200]}; unchanged: {digests(d) == before}")
if want("E15"):
    d = base_copy("e15"); rc, msg, p = train(d, "SOLVER.MAX_EPOCH", "1", flags=("--resume",))
    kept = [x for x in os.listdir(d) if x.startswith("config.") and x != "config.yaml"]
    say("E15", f"--resume of a finished run, same settings: rc {rc}; extra config copies left: {kept}")
if want("E16"):
    d = base_copy("e16"); open(os.path.join(d, "results.json"), "w").write('{"mAP": 1')  # truncated
    rc, msg, p = train(d, "SOLVER.MAX_EPOCH", "2", flags=("--resume",))
    ok = json.load(open(os.path.join(d, "results.json"))).get("complete")
    say("E16", f"--resume with a truncated results.json: rc {rc}; results.json rewritten, complete={ok}")

# ------------------------------------------------------------------ deploy
import cv2  # noqa: E402


def png(path, seed):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(path, np.random.default_rng(seed).integers(0, 256, (32, 16, 3), dtype=np.uint8))

G = os.path.join(P, "gal")
if not os.path.isdir(G):
    for i in range(6):
        png(os.path.join(G, f"{i}.png"), i)
WTS = os.path.join(P, "base", "model_final.pth")
def extract(inp, out, *extra):
    return run([f"{W}/tools/extract_features.py", "--config-file", T, "--weights", WTS, "--input", inp,
                "--output", out, "--no-progress", *extra])

if want("D1"):
    rc, msg, _ = extract(os.path.join(P, "nope"), os.path.join(P, "d1.npz"))
    say("D1", f"extract --input missing: rc {rc}: {msg}; file written: {os.path.exists(os.path.join(P, 'd1.npz'))}")
if want("D2"):
    out = os.path.join(P, "newdir", "sub", "f.npz"); shutil.rmtree(os.path.join(P, "newdir"), ignore_errors=True)
    rc, msg, _ = extract(G, out); say("D2", f"extract --output in a missing folder: rc {rc}, written: {os.path.isfile(out)}")
if want("D3"):
    lst = os.path.join(P, "g3.txt"); open(lst, "w").write("gal/0.png\ngal/1.png\n")
    out = os.path.join(P, "d3.npz"); shutil.rmtree(out, ignore_errors=True); os.path.exists(out) and os.remove(out)
    extract(lst, out); open(lst, "a").write("gal/2.png\n")
    rc, msg, p = extract(lst, out)
    say("D3", f"list file grows by one item, resumed: rc {rc}: {p.stdout.strip().splitlines()[-1][-110:]}")
if want("D4"):
    lst = os.path.join(P, "g4.txt"); open(lst, "w").write("gal/0.png\ngal/1.png\ngal/2.png\n")
    out = os.path.join(P, "d4.npz"); os.path.exists(out) and os.remove(out)
    extract(lst, out); open(lst, "w").write("gal/0.png\ngal/1.png\n")
    rc, msg, _ = extract(lst, out); rc2, _, _ = extract(lst, out, "--no-resume")
    say("D4", f"list file loses an item, resumed: rc {rc}: {msg[:160]}; --no-resume: rc {rc2}")
if want("D5"):
    out = os.path.join(P, "d5.npz"); os.path.exists(out) and os.remove(out)
    lst = os.path.join(P, "g5.txt"); open(lst, "w").write("\n".join(f"gal/{i}.png" for i in range(6)) + "\n")
    extract(G, out); rc, msg, _ = extract(lst, out)
    say("D5", f"folder extraction resumed from a list naming the same images: rc {rc}: {msg[:140]}")
if want("D6"):
    out = os.path.join(P, "d6.npz"); os.path.exists(out) and os.remove(out); extract(G, out)
    idx = os.path.join(P, "idx6"); shutil.rmtree(idx, ignore_errors=True)
    rc, msg, _ = run([f"{W}/tools/build_index.py", "--features", out, out, "--index", idx])
    say("D6", f"build_index --features F F (same file twice): rc {rc}: {msg[:160]}")
if want("D7"):
    out = os.path.join(P, "d6.npz"); idx = os.path.join(P, "idx7"); shutil.rmtree(idx, ignore_errors=True)
    run([f"{W}/tools/build_index.py", "--features", out, "--index", idx])
    rc, msg, p = run([f"{W}/tools/search.py", "--index", idx, "--query-features", out, "-k", "50"])
    rows = [l for l in p.stdout.splitlines() if l.strip()]
    say("D7", f"search -k 50 on a 6-item gallery: rc {rc}; {len(rows)} lines printed; {msg[:100]}")
if want("D8"):
    idx = os.path.join(P, "idx7"); out = os.path.join(P, "d6.npz")
    rc, msg, _ = run([f"{W}/tools/search.py", "--index", idx, "--query-features", out, "-k", "0"])
    say("D8", f"search -k 0: rc {rc}: {msg[:160]}")
if want("D9"):
    np.savez(os.path.join(P, "d9.npz"), embeddings=np.zeros((0, 4), np.float32))
    idx = os.path.join(P, "idx9"); shutil.rmtree(idx, ignore_errors=True)
    rc, msg, _ = run([f"{W}/tools/build_index.py", "--features", os.path.join(P, "d9.npz"), "--index", idx])
    say("D9", f"build_index from a foreign .npz: rc {rc}: {msg[:160]}")
if want("D10"):
    d = os.path.join(P, "d10dir"); os.makedirs(d, exist_ok=True)
    rc, msg, _ = run([f"{W}/tools/export_onnx.py", "--config-file", T, "--weights", WTS, "--output", d])
    say("D10", f"export_onnx --output a folder: rc {rc}: {msg[:200]}")
if want("D11"):
    rc, msg, _ = run([f"{W}/tools/export_onnx.py", "--config-file", T, "--weights", os.path.join(P, "nope.pth"),
                      "--output", os.path.join(P, "d11.onnx")])
    say("D11", f"export_onnx with missing weights: rc {rc}: {msg[:200]}")
if want("D12"):
    out = os.path.join(P, "d6.npz"); idx = os.path.join(P, "idx7")
    rc, msg, _ = run([f"{W}/tools/build_index.py", "--features", out, "--index", idx])
    say("D12", f"build_index into an existing index without --add/--overwrite: rc {rc}: {msg[:160]}")
if want("D13"):
    out = os.path.join(P, "d13.npz"); os.path.exists(out) and os.remove(out)
    rc, msg, p = extract(G, out, "TEST.VIDEO.MAX_CLIPS", "0")
    say("D13", f"extract with TEST.VIDEO.MAX_CLIPS 0: rc {rc}: {msg[:120] if rc else p.stdout.strip()[-80:]}")
if want("D14"):
    rc, msg, _ = run([f"{W}/tools/show_results.py", os.path.join(P, "nope")])
    say("D14", f"show_results on a missing path: rc {rc}: {msg}")
if want("D15"):
    f = os.path.join(P, "empty.json"); open(f, "w").write("")
    rc, msg, _ = run([f"{W}/tools/show_results.py", f]); say("D15", f"show_results on an empty file: rc {rc}: {msg}")
if want("D16"):
    d = base_copy("d16"); r = json.load(open(os.path.join(d, "results.json"))); r["complete"] = False
    json.dump(r, open(os.path.join(d, "results.json"), "w"))
    rc, msg, p = run([f"{W}/tools/show_results.py", d])
    say("D16", f"show_results on a run folder whose run is unfinished: rc {rc}; first line: {p.stdout.splitlines()[0][:90]}")

# ------------------------------------------------------------------ keypoints, datasets, splits
def ds_copy(name, edit):
    root = os.path.join(P, name); shutil.rmtree(root, ignore_errors=True); shutil.copytree(DS, root)
    edit(os.path.join(root, "synthetic", "mars"))
    return dict(ENV, FASTREID_DATASETS=root)

def kp_edit(fn):
    def edit(d):
        path = os.path.join(d, "keypoints.json"); t = json.load(open(path)); fn(path, t)
    return edit

def trainenv(env, name, *extra):
    return run([f"{W}/tools/train_net.py", "--config-file", T, "SOLVER.MAX_EPOCH", "1", *extra, "OUTPUT_DIR", fresh(name)], env=env)

if want("K1"):
    env = ds_copy("k1ds", kp_edit(lambda p, t: json.dump({"frames": {k: np.asarray(v).reshape(-1).tolist() for k, v in t.items()}}, open(p, "w"))))
    rc, msg, p = trainenv(env, "k1")
    line = [l.split("]: ")[-1] for l in p.stdout.splitlines() + p.stderr.splitlines() if "train items (" in l]
    say("K1", f"keypoints nested under 'frames', flat 51-value lists: rc {rc}; {line[0][:150] if line else msg}")
if want("K2"):
    env = ds_copy("k2ds", kp_edit(lambda p, t: json.dump({k: [[x, y, 0] for x, y, _ in v] for k, v in t.items()}, open(p, "w"))))
    rc, msg, _ = trainenv(env, "k2"); say("K2", f"every joint v = 0: rc {rc}: {msg[:220]}")
if want("K3"):
    def cut(p, t):
        k = next(iter(t)); t[k] = t[k][:16]; json.dump(t, open(p, "w"))
    env = ds_copy("k3ds", kp_edit(cut)); rc, msg, _ = trainenv(env, "k3"); say("K3", f"one frame with 16 joints: rc {rc}: {msg[:200]}")
if want("K4"):
    env = ds_copy("k4ds", kp_edit(lambda p, t: open(p, "wb").write(b"\xff\xfe{}")))
    rc, msg, _ = trainenv(env, "k4"); say("K4", f"keypoints.json not UTF-8: rc {rc}: {msg[:200]}")
if want("K5"):
    rc, msg, _ = trainenv(ENV, "k5", "INPUT.KEYPOINTS_MIN_MATCH", "1.5"); say("K5", f"INPUT.KEYPOINTS_MIN_MATCH 1.5: rc {rc}: {msg[:200]}")
if want("K6"):
    def drop(p, t):
        keys = sorted(t); json.dump({k: t[k] for k in keys if not k.startswith("bbox_train/000") }, open(p, "w"))
    env = ds_copy("k6ds", kp_edit(drop)); rc, msg, p = trainenv(env, "k6")
    line = [l.split("]: ")[-1] for l in p.stdout.splitlines() + p.stderr.splitlines() if "train items" in l]
    say("K6", f"keypoints of identities 1-9 removed: rc {rc}; {(line[0] if line else msg)[:260]}")
if want("S1"):
    base = fresh("s1"); os.makedirs(os.path.join(base, "split_0"))
    json.dump({"mAP": 1.0, "complete": True}, open(os.path.join(base, "split_0", "results.json"), "w"))
    open(os.path.join(base, "split_0", "config.yaml"), "w").write("{{{")
    rc, msg, _ = run([f"{W}/tools/run_splits.py", "--config-file", T, "--splits", "0", "--skip-done", "OUTPUT_DIR", base])
    say("S1", f"run_splits --skip-done, split config.yaml garbage: rc {rc}: {msg[:200]}")
if want("S2"):
    rc, msg, _ = run([f"{W}/tools/run_splits.py", "--config-file", T, "--splits", "0", "SOLVER.MAX_EPOCH"])
    say("S2", f"run_splits with an odd override list: rc {rc}: {msg[:200]}")
if want("S3"):
    from scipy.io import loadmat, savemat  # noqa: E402
    def tr(d):
        f = os.path.join(d, "info", "tracks_train_info.mat"); savemat(f, {"track_train_info": loadmat(f)["track_train_info"].T})
    env = ds_copy("s3ds", tr); rc, msg, _ = trainenv(env, "s3"); say("S3", f"tracks_train_info.mat transposed: rc {rc}: {msg[:200]}")
if want("S4"):
    from scipy.io import loadmat, savemat  # noqa: E402
    def zero(d):
        f = os.path.join(d, "info", "query_IDX.mat"); q = loadmat(f)["query_IDX"]; savemat(f, {"query_IDX": q - 1})
    env = ds_copy("s4ds", zero); rc, msg, _ = trainenv(env, "s4"); say("S4", f"query_IDX 0-based: rc {rc}: "
                                                  f"{msg[:200] if rc else 'loaded and evaluated (other, valid tracklets)'}")
if want("S5"):
    rc, msg, _ = trainenv(ENV, "s5", "TEST.VIDEO.MAX_CLIPS", "-1"); say("S5", f"TEST.VIDEO.MAX_CLIPS -1: rc {rc}: {msg[:160]}")
if want("S6"):
    rc, msg, _ = trainenv(ENV, "s6", "SOLVER.BASE_LRR", "0.1"); say("S6", f"typo in a key (SOLVER.BASE_LRR): rc {rc}: {msg[:160]}")
if want("S7"):
    base = fresh("s7")
    rc, msg, _ = run([f"{W}/tools/run_splits.py", "--config-file", T, "--splits", "0", "SOLVER.MAX_EPOCH", "1", "OUTPUT_DIR", base])
    rc2, msg2, p = run([f"{W}/tools/run_splits.py", "--config-file", T, "--splits", "0", "SOLVER.MAX_EPOCH", "1", "OUTPUT_DIR", base])
    say("S7", f"run_splits twice without --skip-done: first rc {rc}, second rc {rc2}: {msg2[:200]}")
if want("S8"):
    base = os.path.join(P, "s7")
    rc, msg, p = run([f"{W}/tools/run_splits.py", "--config-file", T, "--splits", "0", "--skip-done", "--overwrite", "SOLVER.MAX_EPOCH", "1", "OUTPUT_DIR", base])
    say("S8", f"--skip-done --overwrite, same settings: rc {rc}; {[l for l in p.stdout.splitlines() if 'split 0' in l][:1]}")
