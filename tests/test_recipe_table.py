"""Every shipped config of the video baseline and FGReID matches its row in the README recipe
tables (columns paper / public code / ours / why): input size, T, P x K, optimizer, schedule,
epochs, loss weights and test metric. A config changed without its table (or a table edited
without its config) fails here.

Tables: docs/recipes.md (configs/Video-Baseline) and projects/FGReID/README.md "Recipes".
Each table follows a heading ``#### `<config path>`[, `<config path>` ...]`` (paths from the
repository root) and has the rows of :data:`FIELDS`; the ``ours`` cell is
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

READMES = (osp.join("docs", "recipes.md"), osp.join("projects", "FGReID", "README.md"))
CONFIG_DIRS = (osp.join("configs", "Video-Baseline"), osp.join("projects", "FGReID", "configs"))
FIELDS = ("input", "T", "P x K", "optimizer", "schedule", "epochs", "losses", "metric")
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


def recipe(cfg) -> Dict[str, str]:
    """The recipe of a config as the strings of the README's ``ours`` column."""
    s, i = cfg.SOLVER, cfg.INPUT
    k = cfg.DATALOADER.NUM_INSTANCE
    metric = cfg.TEST.METRIC + (" + flip" if cfg.TEST.FLIP.ENABLED else "") + \
        (f" + RR ({cfg.TEST.RERANK.K1}, {cfg.TEST.RERANK.K2}, {cfg.TEST.RERANK.LAMBDA:g})"
         if cfg.TEST.RERANK.ENABLED else "") + \
        (" + ST (tools/eval_st.py)" if "ST" in cfg.TEST and cfg.TEST.ST.ENABLED else "")
    return {
        "input": f"{i.SIZE_TRAIN[0]}x{i.SIZE_TRAIN[1]}",
        "T": str(i.VIDEO.SEQ_LEN),
        "P x K": f"{s.IMS_PER_BATCH // k} x {k}",
        "optimizer": f"{s.OPT} {s.BASE_LR:g}, wd {s.WEIGHT_DECAY:g}",
        "schedule": f"warm-up {s.WARMUP_ITERS} it from x{s.WARMUP_FACTOR:g}; "
                    f"x{s.GAMMA:.4g} at {', '.join(str(x) for x in s.STEPS)}",
        "epochs": f"{s.MAX_EPOCH} ({cfg.DATALOADER.EPOCH_LENGTH})",
        "losses": "; ".join(_loss(cfg, n) for n in cfg.MODEL.LOSSES.NAME),
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
        rows = [r for r in lines[n + 1:n + 30]]
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


def test_recipe_strings_hand_value():
    cfg = load(osp.join("configs", "Video-Baseline", "mars.yml"))
    r = recipe(cfg)
    assert r["P x K"] == "8 x 4" and r["T"] == "4" and r["input"] == "224x112"
    assert r["losses"].startswith("CE 1; center 0.0005; OSM 1 (a 2.844, s 0.9048, l 0.5873)")
    assert r["schedule"] == "warm-up 780 it from x0.01; x0.3283 at 31, 61"
