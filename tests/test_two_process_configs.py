"""Every shipped config family and every switch that changes which modules exist or feed a loss,
on two gloo processes at tiny sizes: two training iterations through DDP (the trainer's own
``wrap_ddp``, ``find_unused_parameters`` off unless a model declares it) and a distributed
evaluation (the evaluator's chunked gather, one row per message here, an odd item count). The
first iteration's gradients equal one process on the whole batch (BN and dropout in eval mode
for that iteration: per-rank BN statistics are a known, documented difference, not what is
checked); the evaluation equals one process evaluating every item.

A module that feeds no loss stops DDP at iteration 2 ("Expected to have finished reduction");
a loss that sums over the batch's identities computed per rank gets its weight divided by the
number of processes (the ``fgreid_var_paper`` case, weight 1 so that the difference shows), and a
mean over a per-rank count is a mean of ratios (MGRe's location loss: three training clips have no
visible joint, so the ranks count different images).
Configs that differ only in data or numbers share one run (``SHARED``); a test checks that every
shipped ``.yml`` is run or shared.
"""
import glob
import importlib
import os
import traceback

import pytest
import torch
from conftest import REPO

from fastreid_ext.utils.modules import train_with_frozen_statistics

launch_mod = importlib.import_module("fastreid_ext.engine.launch")

B, K, C = 8, 2, 4          # global training batch: C identities x K clips; 4 per rank
N_TEST, N_QUERY = 7, 3     # odd: rank 0 embeds 4 items, rank 1 three
# FGPose: its 16-pixel part crops; MGRe: at 32 x 16 most sampled regions hang over the map's
# border (replicated values), and the max pooling (GAP + GMP) then routes its gradient to one of
# several near-equal positions, which one depending on the batch split's rounding; others 32 x 16
SIZE = {"FGPose": (64, 32), "MGRe": (64, 32)}

P = "projects/"
FGP, FGR, MGA, MGE = P + "FGPose/configs/", P + "FGReID/configs/", P + "MGRAFA/configs/", P + "MGRe/configs/"

ONE_Y = '("AveragedCrossEntropyLoss", "TripletLoss", "CenterLoss", "OSMLoss", "VarianceLoss")'

#: case -> (config, overrides)
CASES = {
    # host-plugin video baseline (FGReID's stage 1)
    "video_baseline": ("configs/Video-Baseline/mars.yml", []),
    "video_baseline_vehicleid": (FGR + "VeRi/stage1_vehicleid_baseline.yml", []),
    # FGReID (stage 2 and its Table rows that change the modules)
    "fgreid_video": (FGR + "MARS/fgreid.yml", []),
    "fgreid_image": (FGR + "Market1501/fgreid.yml", []),
    "fgreid_rerank": (FGR + "MARS/fgreid_rerank.yml", ["TEST.RERANK.K1", "3", "TEST.RERANK.K2", "2"]),
    "fgreid_var_paper": (FGR + "MARS/fgreid.yml", ["MODEL.LOSSES.VAR.NORM", "paper",
                                                   "MODEL.LOSSES.VAR.SCALE", "1.0"]),
    # one label vector: the losses between Y1 and Y2 (KL, SR) go too
    "fgreid_no_gfm": (FGR + "MARS/fgreid.yml", ["MODEL.FGREID.GFM", "False", "MODEL.LOSSES.NAME", ONE_Y]),
    "fgreid_only_gfm": (FGR + "MARS/fgreid.yml", ["MODEL.FGREID.CONTEXT", "False", "MODEL.LOSSES.NAME", ONE_Y]),
    "fgreid_no_fgm": (FGR + "MARS/fgreid.yml", ["MODEL.FGREID.FGM", "False"]),
    "fgreid_no_non_local": (FGR + "MARS/fgreid.yml", ["MODEL.FGREID.NON_LOCAL", "False"]),
    "fgreid_kqv": (FGR + "MARS/fgreid.yml", ["MODEL.FGREID.SHARED_QK", "False"]),
    "fgreid_no_s_channel": (FGR + "MARS/fgreid.yml", ["MODEL.FGREID.S_CHANNEL", "False"]),
    "fgreid_1r": (FGR + "MARS/fgreid.yml", ["MODEL.FGREID.SHARED_BACKBONE", "True"]),
    # MG-RAFA (Tables 2-5)
    "mgrafa": (MGA + "mars_mgrafa.yml", []),
    "mgrafa_baseline": (MGA + "mars_baseline.yml", []),
    "mgrafa_afa": (MGA + "mars_mgrafa.yml", ["MODEL.MGRAFA.ATTENTION", "afa"]),
    "mgrafa_sg_s1": (MGA + "mars_mgrafa.yml", ["MODEL.MGRAFA.NUM_GROUPS", "1", "MODEL.MGRAFA.GRANULARITY", "single"]),
    "mgrafa_sg_s4": (MGA + "mars_mgrafa.yml", ["MODEL.MGRAFA.GRANULARITY", "single"]),
    "mgrafa_n2": (MGA + "mars_mgrafa.yml", ["MODEL.MGRAFA.NUM_GROUPS", "2"]),
    "mgrafa_nl_s": (MGA + "mars_mgrafa.yml", ["MODEL.MGRAFA.ATTENTION", "nl_s"]),
    "mgrafa_nl_st": (MGA + "mars_mgrafa.yml", ["MODEL.MGRAFA.ATTENTION", "nl_st"]),
    "mgrafa_rga_sc": (MGA + "mars_mgrafa.yml", ["MODEL.MGRAFA.ATTENTION", "rga_sc"]),
    "mgrafa_se": (MGA + "mars_mgrafa.yml", ["MODEL.MGRAFA.ATTENTION", "se"]),
    "mgrafa_cbam_single": (MGA + "mars_mgrafa.yml", ["MODEL.MGRAFA.ATTENTION", "cbam",
                                                     "MODEL.MGRAFA.NUM_GROUPS", "1"]),
    "mgrafa_ref_spatial": (MGA + "mars_mgrafa.yml", ["MODEL.MGRAFA.REFERENCE", "spatial_pool"]),
    "mgrafa_ref_temporal": (MGA + "mars_mgrafa.yml", ["MODEL.MGRAFA.REFERENCE", "temporal_pool"]),
    "mgrafa_ref_all": (MGA + "mars_mgrafa.yml", ["MODEL.MGRAFA.REFERENCE", "all"]),
    "mgrafa_no_group_loss": (MGA + "mars_mgrafa.yml", ["MODEL.MGRAFA.GROUP_LOSS", "False"]),
    # MGRe (Tables 4, 5, 7 and the keypoint switch)
    "mgre_image": (MGE + "market1501_mgre.yml", []),
    "mgre_video": (MGE + "mars_mgre.yml", []),
    "mgre_no_keypoints": (MGE + "synthetic_cpu_no_keypoints.yml", []),
    "mgre_video_baseline": (MGE + "synthetic_cpu_baseline.yml", []),
    "mgre_stage1": (MGE + "market1501_mgre.yml", ["MODEL.MGRE.STAGES", "[1]"]),
    "mgre_single_grained_features": (MGE + "market1501_mgre.yml", ["MODEL.MGRE.MODE", "single_grained_features"]),
    "mgre_single_grained_regions": (MGE + "market1501_mgre.yml", ["MODEL.MGRE.MODE", "single_grained_regions"]),
    "mgre_baseline_jo": (MGE + "market1501_mgre.yml", ["MODEL.MGRE.MODE", "baseline_jo"]),
    "mgre_without_jo": (MGE + "market1501_mgre.yml", ["MODEL.MGRE.JOINT_OPTIMIZATION", "False"]),
    "mgre_no_guidance": (MGE + "market1501_mgre.yml", ["MODEL.MGRE.SEMANTIC_GUIDANCE", "False"]),
    "mgre_fe_stage": (MGE + "market1501_mgre.yml", ["MODEL.MGRE.FE_MODULE", "stage"]),
    # FGPose (section 5.1 steps, Tables 3-8)
    "fgpose_step1": (FGP + "fgpr_step1.yml", []),
    "fgpose_step2": (FGP + "fgpr_step2.yml", []),
    "fgpose_step3": (FGP + "fgpr_step3.yml", []),
    "fgpose_step4": (FGP + "fgpr_step4.yml", []),
    "fgpose_table3_global": (FGP + "fgpr_step4.yml", ["MODEL.FGPOSE.TEST_STREAMS", '["global"]']),
    "fgpose_table3_pose": (FGP + "fgpr_step4.yml", ["MODEL.FGPOSE.TEST_STREAMS", '["ma", "js"]']),
    "fgpose_table4_no_ma": (FGP + "fgpr_step4.yml", ["MODEL.FGPOSE.STREAMS", '["global", "motion", "js"]']),
    "fgpose_table4_no_js": (FGP + "fgpr_step4.yml", ["MODEL.FGPOSE.STREAMS", '["global", "motion", "ma"]']),
    "fgpose_table5_k0": (FGP + "fgpr_step4.yml", ["MODEL.FGPOSE.ATTENTION_LEVELS", "[]"]),
    "fgpose_table5_k0_step3": (FGP + "fgpr_step3.yml", ["MODEL.FGPOSE.ATTENTION_LEVELS", "[]"]),
    "fgpose_table6_level3": (FGP + "fgpr_step4.yml", ["MODEL.FGPOSE.ATTENTION_LEVELS", "[3]"]),
    "fgpose_table7_coarse_to_fine": (FGP + "fgpr_step4.yml", ["MODEL.FGPOSE.ATTENTION_ORDER", "coarse_to_fine"]),
    "fgpose_table8_cnn": (FGP + "fgpr_step4.yml", ["MODEL.FGPOSE.ATTENTION_NET", "cnn"]),
    "fgpose_table8_cnn_k0": (FGP + "fgpr_step4.yml", ["MODEL.FGPOSE.ATTENTION_NET", "cnn",
                                                      "MODEL.FGPOSE.ATTENTION_LEVELS", "[]"]),
    "fgpose_table8_appearance": (FGP + "fgpr_step4.yml", ["MODEL.FGPOSE.ATTENTION_SOURCE", "appearance"]),
    "fgpose_shared_motion": (FGP + "fgpr_step2.yml", ["MODEL.FGPOSE.MOTION_BACKBONE", "shared"]),
}

#: refused at build time on both ranks, with this message
REFUSED = {
    "mgre_baseline_jo_no_keypoints": ((MGE + "synthetic_cpu_no_keypoints.yml", ["MODEL.MGRE.MODE", "baseline_jo"]),
                                      "feed no loss"),
}

#: shipped configs that differ from a run case only in data, sizes or numbers
SHARED = {
    "configs/Video-Baseline/ilidsvid.yml": "video_baseline",
    "configs/Video-Baseline/prid2011.yml": "video_baseline",
    "configs/Video-Baseline/synthetic_cpu.yml": "video_baseline",
    FGR + "MARS/stage1_video_baseline.yml": "video_baseline",
    FGR + "Synthetic/stage1_video_baseline.yml": "video_baseline",
    FGR + "PRID2011/fgreid.yml": "fgreid_video",
    FGR + "iLIDSVID/fgreid.yml": "fgreid_video",
    FGR + "Synthetic/fgreid.yml": "fgreid_video",
    FGR + "CUHK01/fgreid.yml": "fgreid_image",
    FGR + "CUHK01/fgreid_star.yml": "fgreid_image",       # + a checkpoint to start from
    FGR + "CUHK01/fgreid_p100.yml": "fgreid_image",       # another protocol and warm-up
    FGR + "CUHK01/fgreid_star_p100.yml": "fgreid_image",
    FGR + "Market1501/fgreid_st.yml": "fgreid_image",     # + the ST re-scoring tool (tools/eval_st.py)
    FGR + "Market1501/fgreid_star.yml": "fgreid_image",
    FGR + "VeRi/fgreid.yml": "fgreid_image",
    FGR + "VeRi/fgreid_st.yml": "fgreid_image",
    MGA + "ilidsvid_mgrafa.yml": "mgrafa",
    MGA + "prid2011_mgrafa.yml": "mgrafa",
    MGA + "synthetic_cpu.yml": "mgrafa",
    MGA + "synthetic_cpu_baseline.yml": "mgrafa_baseline",
    MGE + "cuhk03_detected_mgre.yml": "mgre_image",
    MGE + "cuhk03_labeled_mgre.yml": "mgre_image",
    MGE + "dukemtmc_mgre.yml": "mgre_image",
    MGE + "msmt17_mgre.yml": "mgre_image",
    MGE + "synthetic_cpu.yml": "mgre_video",
    FGP + "mars_fgpose.yml": "fgpose_step4",
    FGP + "synthetic_cpu.yml": "fgpose_step4",
    FGP + "synthetic_cpu_gait.yml": "fgpose_step4",
    FGP + "synthetic_cpu_step1.yml": "fgpose_step1",
    FGP + "synthetic_cpu_step2.yml": "fgpose_step2",
    FGP + "synthetic_cpu_step3.yml": "fgpose_step3",
    FGP + "synthetic_cpu_step4.yml": "fgpose_step4",
}


def _tiny_cfg(path, opts):
    """The shipped config with its switches, at tiny sizes (random init, small backbones)."""
    from fastreid_ext.config import build_config

    cfg = build_config(os.path.join(REPO, path), list(opts), freeze=False)
    arch = cfg.MODEL.META_ARCHITECTURE
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.BACKBONE.PRETRAIN = False
    cfg.MODEL.HEADS.NUM_CLASSES = C
    cfg.SOLVER.IMS_PER_BATCH = B
    cfg.DATALOADER.NUM_INSTANCE = K
    cfg.INPUT.SIZE_TRAIN = cfg.INPUT.SIZE_TEST = list(SIZE.get(arch, (32, 16)))
    # every family on FGPose's CPU backbone (a one-block-per-stage ResNet with the host's
    # attribute names, widths 8-64): the switches under test are above the backbone
    cfg.MODEL.BACKBONE.NAME = "build_fgpose_tiny_backbone"
    cfg.MODEL.FGPOSE.TINY_WIDTH = 8
    cfg.MODEL.BACKBONE.FEAT_DIM = 64
    if arch == "FGPose":
        m = cfg.MODEL.FGPOSE  # synthetic_cpu.yml's sizes
        m.SEGMENT_LEN, m.DELTA_T, m.RNN_HIDDEN = 4, 2, 8
        m.PART_SIZE, m.FN_WIDTH, m.JS_DIM = 16, 4, 16
        cfg.INPUT.VIDEO.SEQ_LEN = cfg.TEST.VIDEO.SEQ_LEN = 6
    else:
        t = min(int(cfg.INPUT.VIDEO.SEQ_LEN), 2)
        cfg.INPUT.VIDEO.SEQ_LEN = cfg.TEST.VIDEO.SEQ_LEN = t
    if arch == "FGReID":
        cfg.MODEL.FGREID.REDUCED_DIM = 16
        cfg.MODEL.FGREID.MARS_WEIGHTS = ""
        cfg.MODEL.FGREID.PRETRAINED_MODEL = ""
    if arch == "MGRe":
        cfg.MODEL.MGRE.EMBED_DIM = 32
        cfg.MODEL.MGRE.LOC_HIDDEN = 16
    cfg.freeze()
    return cfg


def _batch(cfg, n, seed, targets=None):
    g = torch.Generator().manual_seed(seed)
    t = int(cfg.INPUT.VIDEO.SEQ_LEN)
    kp = torch.rand(n, t, 17, 3, generator=g)
    kp[..., 2] = 1.0
    out = {"images": torch.rand(n, t, 3, *cfg.INPUT.SIZE_TRAIN, generator=g) * 255, "keypoints": kp,
           "erased": torch.zeros(n, t, dtype=torch.bool)}
    if targets is not None:
        out["targets"] = targets
    return out


def _rows(batch, lo, hi):
    return {k: v[lo:hi] for k, v in batch.items()}


def _step(model, batch):
    from fastreid.utils.events import EventStorage

    with EventStorage():
        losses = model(batch)
    total = sum(losses.values())
    total.backward()
    return {k: float(v.detach()) for k, v in losses.items()}


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _build(cfg):
    from fastreid_ext.engine import Trainer

    torch.manual_seed(0)
    return Trainer.build_model(cfg)


def _train_batch(cfg):
    batch = _batch(cfg, B, 1, torch.arange(C).repeat_interleave(K))  # rank r: identities 2r, 2r + 1
    batch["keypoints"][B - 3:, ..., 2] = 0.0  # no visible joint: the ranks count different images
    return batch


def _test_items():
    pids = [0, 1, 2, 0, 1, 2, 3]
    camids = [0] * N_QUERY + [1] * (N_TEST - N_QUERY)
    return pids, camids


def _evaluator(cfg, model=None, parts=None, weights=None):
    from fastreid_ext.engine.trainer import set_distance_parts
    from fastreid_ext.evaluation.video_evaluator import VideoClipEvaluator

    pids, camids = _test_items()
    ev = VideoClipEvaluator(cfg, N_QUERY, N_TEST, pids, camids)
    if model is not None:
        set_distance_parts(ev, model)
    else:
        ev.distance_parts, ev.distance_weights = parts, weights
    return ev


def _run_case(cfg, rank, world):
    """One case on this rank: iteration 1 (deterministic, gradients saved), iteration 2 (plain
    training mode), then the distributed evaluation."""
    from fastreid_ext.engine import Trainer
    from fastreid_ext.engine.ddp import sync_buffers

    model = _build(cfg)
    ddp = Trainer.wrap_ddp(cfg, model) if world > 1 else model
    opt, _ = Trainer.build_optimizer(cfg, model)
    batch = _train_batch(cfg)
    n = B // world
    mine = _rows(batch, rank * n, (rank + 1) * n)
    train_with_frozen_statistics(model)
    opt.zero_grad(set_to_none=True)
    losses1 = _step(ddp, mine)
    grads = _grads(model)
    opt.step()
    model.train()
    opt.zero_grad(set_to_none=True)
    losses2 = _step(ddp, mine)
    opt.step()

    sync_buffers(ddp)
    model.eval()
    test = _batch(cfg, N_TEST, 2)
    lo, hi = (0, 4) if rank == 0 else (4, N_TEST)
    if world == 1:
        lo, hi = 0, N_TEST
    test["track_idx"] = torch.arange(N_TEST)
    ev = _evaluator(cfg, model)
    with torch.no_grad():
        emb = model(_rows(test, lo, hi))
    ev.process(_rows(test, lo, hi), emb)
    results = ev.evaluate()
    again = ev.evaluate()  # a second call gathers nothing twice
    assert {k: v for k, v in again.items() if isinstance(v, float)} == \
        {k: v for k, v in results.items() if isinstance(v, float)}
    return {"losses1": losses1, "losses2": losses2, "grads": grads, "emb": emb,
            "parts": ev.distance_parts, "weights": ev.distance_weights,
            "results": {k: float(v) for k, v in results.items() if isinstance(v, (int, float))}}


def _worker(out_dir):
    import torch.distributed as dist

    from fastreid_ext.evaluation import video_evaluator
    from fastreid_ext.modeling.losses import gather

    torch.set_num_threads(1)
    video_evaluator.GATHER_CHUNK_BYTES = 1  # one tracklet row per message: the chunked gather
    rank, world = dist.get_rank(), dist.get_world_size()
    exchanged = []  # size exchanges of the loss gathers (none: training batches are fixed)
    exchange = gather._sizes
    gather._sizes = lambda n, device: exchanged.append(n) or exchange(n, device)
    out = {}
    for name, (path, opts) in CASES.items():
        try:
            out[name] = _run_case(_tiny_cfg(path, opts), rank, world)
        except Exception:  # raised on both ranks (model code is the same): record it, go on
            out[name] = {"error": traceback.format_exc(limit=-4)}
    for name, ((path, opts), _) in REFUSED.items():
        try:
            _build(_tiny_cfg(path, opts))
            out[name] = {"error": None}
        except ValueError as e:
            out[name] = {"error": str(e)}
    out["size_exchanges"] = len(exchanged)
    torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """One 2-process gloo run of every case (spawning costs a large part of this file's time)."""
    out = tmp_path_factory.mktemp("two_process_configs")
    launch_mod.launch(_worker, 2, device="cpu", args=(str(out),))
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


def test_every_shipped_config_is_run_or_shared():
    shipped = {os.path.relpath(p, REPO) for pattern in ("configs/*/*.yml", "projects/*/configs/*.yml",
                                                        "projects/*/configs/*/*.yml")
               for p in glob.glob(os.path.join(REPO, pattern))}
    shipped = {p for p in shipped if not os.path.basename(p).startswith("Base-")}
    run = {path for path, _ in CASES.values()}
    assert shipped - run - set(SHARED) == set()
    assert set(SHARED) <= shipped and set(SHARED.values()) <= set(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_two_iterations_and_evaluation_on_two_processes(ranks, case):
    for r in ranks:
        assert r[case].get("error") is None, r[case]["error"]
        for losses in (r[case]["losses1"], r[case]["losses2"]):
            assert losses and all(torch.isfinite(torch.tensor(v)) for v in losses.values()), losses
    # rank 0 evaluates every item; the others return {} (the host's evaluator convention)
    assert ranks[1][case]["results"] == {}
    got = ranks[0][case]["results"]
    ev = _evaluator(_tiny_cfg(*CASES[case]), parts=ranks[0][case]["parts"], weights=ranks[0][case]["weights"])
    ev.process({"track_idx": torch.arange(N_TEST)}, torch.cat([r[case]["emb"] for r in ranks]))
    expected = {k: float(v) for k, v in ev.evaluate().items() if isinstance(v, (int, float))}
    assert got.keys() == expected.keys()
    for k in expected:
        assert got[k] == pytest.approx(expected[k], rel=1e-5, abs=1e-6), k


@pytest.mark.parametrize("case", sorted(CASES))
def test_first_step_gradients_equal_one_process_on_the_whole_batch(ranks, case):
    assert ranks[0][case].get("error") is None, ranks[0][case]["error"]
    cfg = _tiny_cfg(*CASES[case])
    model = _build(cfg)
    train_with_frozen_statistics(model)
    _step(model, _train_batch(cfg))
    expected = _grads(model)
    for r in ranks:
        got = r[case]["grads"]
        assert got.keys() == expected.keys()
        scale = max(g.abs().max().item() for g in expected.values())
        for name, g in expected.items():
            torch.testing.assert_close(got[name], g, rtol=1e-3, atol=1e-5 * scale, msg=lambda m: f"{name}: {m}")


def test_training_gathers_exchange_no_sizes(ranks):
    """``Trainer.wrap_ddp`` tells the losses every rank's batch size (drop_last batches)."""
    assert [r["size_exchanges"] for r in ranks] == [0, 0]


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_configs_whose_modules_feed_no_loss_are_refused(ranks, case):
    for r in ranks:
        assert r[case]["error"] is not None and REFUSED[case][1] in r[case]["error"]


def test_gpu_configs_train_with_cudnn_benchmark():
    """Every shipped config that trains on the GPU lets cuDNN pick its kernels (the host's
    ``default_setup`` sets ``torch.backends.cudnn.benchmark`` from it for training)."""
    from fastreid_ext.config import build_config

    paths = {p for p, _ in CASES.values()} | set(SHARED)
    gpu = [p for p in sorted(paths) if "synthetic" not in p.lower()]  # the CPU-sized configs' names
    assert len(gpu) > 20
    assert [p for p in gpu if not build_config(os.path.join(REPO, p)).CUDNN_BENCHMARK] == []
