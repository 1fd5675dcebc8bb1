"""Every shipped config of the video baseline and FGReID matches its row in the recipe tables
(columns paper / public code / ours / why): input size, T, P x K, optimizer, schedule, epochs,
loss weights, clip sampling, augmentation, initialisation and test metric. A config changed
without its table (or a table edited without its config) fails here. Every ``public code`` cell
that describes the public code cites the file and line it was read from (``file.py:N``).

Tables: docs/video-baseline.md "Recipes" (configs/Video-Baseline) and projects/FGReID/README.md
"Recipes". Each table follows a heading ``#### `<config path>`[, `<config path>` ...]`` (paths
from the repository root) and has the rows of :data:`FIELDS`; the ``ours`` cell is
:func:`recipe` of every config named in the heading.
"""
import os
import os.path as osp
import re
from typing import Dict, List, Tuple

import pytest
from conftest import REPO

import fastreid_ext
import fgreid

READMES = (osp.join("docs", "video-baseline.md"), osp.join("projects", "FGReID", "README.md"))
CONFIG_DIRS = (osp.join("configs", "Video-Baseline"), osp.join("projects", "FGReID", "configs"))
FIELDS = ("input", "T", "P x K", "optimizer", "schedule", "epochs", "losses", "clips", "augmentation",
          "init", "metric")
# a public-code cell that describes the public code names a file and line: `tools/x.py:12-15`
CITATION = re.compile(r"[\w./-]+\.(py|conf|md):\d+")
_SHORT = {"CrossEntropyLoss": "CE", "AveragedCrossEntropyLoss": "CE-avg", "CenterLoss": "center",
          "KLConsistencyLoss": "KL", "SatisfiedRankLoss": "SR"}


def load(path: str):
    cfg = fastreid_ext.get_cfg()
    fgreid.add_fgreid_config(cfg)
    cfg.merge_from_file(osp.join(REPO, path))
    return cfg


def _loss(cfg, name: str) -> str:
    L = cfg.MODEL.LOSSES
    if name == "TripletLoss":
        return f"triplet {L.TRI.SCALE:.4g} (m {L.TRI.MARGIN:.4g}, {L.TRI.DISTANCE})"
    if name == "OSMLoss":
        return f"OSM {L.OSM.SCALE:.4g} (a {L.OSM.ALPHA:.4g}, s {L.OSM.SIGMA:.4g}, l {L.OSM.L:.4g})"
    if name == "AttentionLoss":
        return f"att {L.ATT.SCALE:g} ({L.ATT.TARGET}, {L.ATT.REDUCTION})"
    if name == "VarianceLoss":
        return f"var {L.VAR.SCALE:.4g} ({L.VAR.NORM})"
    node = {"CrossEntropyLoss": L.CE, "AveragedCrossEntropyLoss": L.CE, "CenterLoss": L.CENTER,
            "KLConsistencyLoss": L.KL, "SatisfiedRankLoss": L.SR}[name]
    return f"{_SHORT[name]} {node.SCALE:g}"


def _clips(cfg) -> str:
    v, t = cfg.INPUT.VIDEO, cfg.TEST.VIDEO
    if v.SEQ_LEN == 1:
        return "images"
    if t.MAX_CLIPS == 0:
        return f"{v.SAMPLER}; test every dense clip of {t.SEQ_LEN}"
    return f"{v.SAMPLER}; test <= {t.MAX_CLIPS} dense clips of {t.SEQ_LEN}, spread"


def _augmentation(cfg) -> str:
    i, v = cfg.INPUT, cfg.INPUT.VIDEO
    parts = [f"flip {i.FLIP.PROB:g}" if i.FLIP.ENABLED else "no flip"]
    parts.append(f"pad {i.PADDING.SIZE} + crop" if i.PADDING.ENABLED else "no crop")
    if i.REA.ENABLED:
        parts.append(f"REA {i.REA.PROB:g}" + (" (spare one)" if v.REA_SPARE_ONE and v.SEQ_LEN > 1 else ""))
    if v.FRAME_ERASE.ENABLED:
        parts.append(f"labelled erase {v.FRAME_ERASE.PROB:g}")
    level = "image" if v.SEQ_LEN == 1 else v.AUG_GRANULARITY
    return f"{level}: " + ", ".join(parts)


def _init(cfg) -> str:
    if cfg.MODEL.META_ARCHITECTURE == "FGReID":
        return f"FGREID.INIT {cfg.MODEL.FGREID.INIT}"
    if cfg.MODEL.TEMPORAL.AGG == "attention" and cfg.INPUT.VIDEO.SEQ_LEN > 1:
        return f"attention {cfg.MODEL.TEMPORAL.ATT_INIT}, score {cfg.MODEL.TEMPORAL.ATT_SCORE_ACT}"
    return "host"


def recipe(cfg) -> Dict[str, str]:
    """The recipe of a config as the strings of the README's ``ours`` column."""
    s, i = cfg.SOLVER, cfg.INPUT
    k = cfg.DATALOADER.NUM_INSTANCE
    metric = cfg.TEST.METRIC + (" + flip" if cfg.TEST.FLIP.ENABLED else "") + \
        (f" + RR ({cfg.TEST.RERANK.K1}, {cfg.TEST.RERANK.K2}, {cfg.TEST.RERANK.LAMBDA:g})"
         if cfg.TEST.RERANK.ENABLED else "") + \
        (" + ST (tools/eval_st.py)" if "FGREID" in cfg and cfg.FGREID.ST.ENABLED else "")
    return {
        "input": f"{i.SIZE_TRAIN[0]}x{i.SIZE_TRAIN[1]}",
        "T": str(i.VIDEO.SEQ_LEN),
        "P x K": f"{s.IMS_PER_BATCH // k} x {k}",
        "optimizer": f"{s.OPT} {s.BASE_LR:g}, wd {s.WEIGHT_DECAY:g}",
        "schedule": f"warm-up {s.WARMUP_ITERS} it from x{s.WARMUP_FACTOR:g}; "
                    f"x{s.GAMMA:.4g} at {', '.join(str(x) for x in s.STEPS)}",
        "epochs": f"{s.MAX_EPOCH} ({cfg.DATALOADER.EPOCH_LENGTH})",
        "losses": "; ".join(_loss(cfg, n) for n in cfg.MODEL.LOSSES.NAME),
        "clips": _clips(cfg),
        "augmentation": _augmentation(cfg),
        "init": _init(cfg),
        "metric": metric,
    }


def _clean(cell: str) -> str:
    return re.sub(r"\s+", " ", cell.replace("`", "")).strip()


def parse_tables(text: str) -> List[Tuple[List[str], Dict[str, Dict[str, str]]]]:
    """``[(config paths, {field: {column: cell}})]`` of the tables under ``#### `path` ...``."""
    out = []
    lines = text.splitlines()
    for n, line in enumerate(lines):
        if not line.startswith("#### "):
            continue
        paths = re.findall(r"`([^`]+\.yml)`", line)
        if not paths:
            continue
        rows = [r for r in lines[n + 1:n + 40]]
        start = next(j for j, r in enumerate(rows) if r.startswith("|"))
        table = []
        for r in rows[start:]:
            if not r.startswith("|"):
                break
            table.append([_clean(c) for c in r.strip().strip("|").split("|")])
        header, body = table[0], [r for r in table[2:]]
        out.append((paths, {r[0]: dict(zip(header[1:], r[1:])) for r in body}))
    return out


def shipped_configs() -> List[str]:
    found = []
    for d in CONFIG_DIRS:
        for root, _, files in os.walk(osp.join(REPO, d)):
            for f in files:
                if f.endswith(".yml") and not f.startswith("Base-"):
                    found.append(osp.relpath(osp.join(root, f), REPO))
    return sorted(found)


def all_tables():
    tables = []
    for readme in READMES:
        with open(osp.join(REPO, readme)) as f:
            tables.extend(parse_tables(f.read()))
    return tables


def test_every_shipped_config_has_a_recipe_table():
    named = {p for paths, _ in all_tables() for p in paths}
    assert set(shipped_configs()) <= named, sorted(set(shipped_configs()) - named)
    assert named <= set(shipped_configs()), sorted(named - set(shipped_configs()))


@pytest.mark.parametrize("paths,table", all_tables(), ids=lambda v: v[0] if isinstance(v, list) else "")
def test_recipe_table_matches_the_configs(paths, table):
    assert set(table) == set(FIELDS), sorted(set(table) ^ set(FIELDS))
    for row in table.values():
        assert set(row) == {"paper", "public code", "ours", "why they differ"}, row
    for path in paths:
        ours = recipe(load(path))
        for field in FIELDS:
            assert table[field]["ours"] == ours[field], (path, field)


def _names_public_code(cell: str) -> bool:
    """Cells that only say there is no public counterpart need no citation."""
    return cell not in ("—", "") and not cell.startswith(("no ", "not "))


@pytest.mark.parametrize("paths,table", all_tables(), ids=lambda v: v[0] if isinstance(v, list) else "")
def test_public_code_cells_cite_file_and_line(paths, table):
    uncited = [field for field, row in table.items()
               if _names_public_code(row["public code"]) and not CITATION.search(row["public code"])]
    assert not uncited, (paths, uncited)


def test_citation_rule_hand_cases():
    assert CITATION.search("Adam 0.00035 (main_scripts/Video.py:153, 228)")
    assert CITATION.search("euclidean (tools/image_eval.py:60-71)")
    assert not CITATION.search("Adam 0.00035 (config_trainer.py)")
    assert not _names_public_code("—") and not _names_public_code("no VeRi command")
    assert _names_public_code("224x112")


def test_recipe_strings_hand_value():
    cfg = load(osp.join("configs", "Video-Baseline", "mars.yml"))
    r = recipe(cfg)
    assert r["P x K"] == "8 x 4" and r["T"] == "4" and r["input"] == "224x112"
    assert r["losses"].startswith("CE 1; center 0.0005; OSM 1 (a 2.844, s 0.9048, l 0.5873)")
    assert r["schedule"] == "warm-up 780 it from x0.01; x0.3283 at 31, 61"
    assert r["clips"] == "random; test every dense clip of 4"
    assert r["augmentation"] == "frame: flip 0.5, pad 10 + crop, REA 0.5, labelled erase 0.5"
    assert r["init"] == "attention fan_in, score none"
    r = recipe(load(osp.join("projects", "FGReID", "configs", "CUHK01", "fgreid.yml")))
    assert r["metric"] == "euclidean" and r["clips"] == "images" and r["init"] == "FGREID.INIT public"
