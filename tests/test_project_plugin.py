"""A project plugs into the core through an entry point, with no change to ``fastreid_ext``.

A throw-away project (a package with a meta-architecture, its config keys and a hash
exclusion) is "installed" as a ``.dist-info`` with an ``entry_points.txt`` in a temporary
folder on ``PYTHONPATH``, and trained through ``tools/train_net.py``."""
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
from conftest import REPO

TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")
TINY = os.path.join(REPO, "tests", "configs", "tiny_video.yml")
PROJECT_NAMES = ("fgreid", "mgrafa", "mgre", "fgpose", "mg-rafa")

TOY_PACKAGE = '''
"""A throw-away project for the plug-in test."""
import torch
from torch import nn
from fastreid.config import CfgNode as CN, configurable
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY

from fastreid_ext.config import exclude_from_embedding_hash
from fastreid_ext.modeling.meta_arch import VideoBaseline

exclude_from_embedding_hash("MODEL.TOYPROJ.INIT_WEIGHTS")


def add_toyproj_config(cfg):
    if "TOYPROJ" in cfg.MODEL:
        return cfg
    cfg.MODEL.TOYPROJ = CN()
    cfg.MODEL.TOYPROJ.GAIN = 1.0
    cfg.MODEL.TOYPROJ.INIT_WEIGHTS = ""
    return cfg


@META_ARCH_REGISTRY.register()
class ToyProjNet(VideoBaseline):
    @configurable
    def __init__(self, *, gain, **kwargs):
        super().__init__(**kwargs)
        self.toy_gain = nn.Parameter(torch.tensor(float(gain)), requires_grad=False)

    @classmethod
    def from_config(cls, cfg):
        args = super().from_config(cfg)
        args["gain"] = cfg.MODEL.TOYPROJ.GAIN
        return args
'''


@pytest.fixture()
def toy_site(tmp_path):
    """A folder holding the package ``toyproj`` and its installed distribution metadata."""
    site = tmp_path / "site"
    (site / "toyproj").mkdir(parents=True)
    (site / "toyproj" / "__init__.py").write_text(TOY_PACKAGE)
    info = site / "toyproj-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toyproj\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[fastreid_ext.projects]\ntoyproj = toyproj:add_toyproj_config\n")
    return str(site)


def _env(root, site=None):
    env = dict(os.environ, FASTREID_DATASETS=root, OMP_NUM_THREADS="1")
    if site:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (site, env.get("PYTHONPATH")) if p)
    return env


def test_core_names_no_project():
    """No file of the core names a project (code, comments and docstrings)."""
    pattern = re.compile("|".join(re.escape(n) for n in PROJECT_NAMES), re.IGNORECASE)
    hits = []
    for folder, _, files in os.walk(os.path.join(REPO, "fastreid_ext")):
        for name in files:
            if name.endswith((".py", ".md", ".yml", ".yaml", ".txt")):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as f:
                    for i, line in enumerate(f, 1):
                        if pattern.search(line):
                            hits.append(f"{os.path.relpath(path, REPO)}:{i}: {line.strip()}")
    assert not hits, "\n".join(hits)


def test_throwaway_project_trains_through_train_net(tiny_datasets_root, toy_site, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, TRAIN_NET, "--config-file", TINY, "MODEL.META_ARCHITECTURE", "ToyProjNet",
           "MODEL.TOYPROJ.GAIN", "2.5", "SOLVER.MAX_EPOCH", "1", "OUTPUT_DIR", str(out)]
    proc = subprocess.run(cmd, env=_env(tiny_datasets_root, toy_site), capture_output=True, text=True,
                          timeout=600, cwd="/")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 0.0 <= json.loads((out / "results.json").read_text())["mAP"] <= 100.0
    # the project's meta-architecture was built from the project's config key
    import torch

    state = torch.load(out / "model_final.pth", map_location="cpu")["model"]
    assert float(state["toy_gain"]) == 2.5
    assert "GAIN: 2.5" in (out / "config.yaml").read_text()

    # without the entry point the same command does not know the project's key
    proc = subprocess.run(cmd, env=_env(tiny_datasets_root), capture_output=True, text=True,
                          timeout=600, cwd="/")
    assert proc.returncode != 0 and "TOYPROJ" in proc.stderr


def test_project_declares_its_hash_exclusions(toy_site):
    """The project's declared key does not change the deployment hash; its other keys do."""
    script = textwrap.dedent(f"""
        from fastreid_ext.config import build_config, register_projects
        from fastreid_ext.deploy.features_file import config_hash
        names = [f.__module__ for f in register_projects()]
        assert "toyproj" in names, names
        base = build_config({TINY!r}, ["MODEL.META_ARCHITECTURE", "ToyProjNet"])
        init = build_config({TINY!r}, ["MODEL.META_ARCHITECTURE", "ToyProjNet",
                                       "MODEL.TOYPROJ.INIT_WEIGHTS", "stage1.pth"])
        gain = build_config({TINY!r}, ["MODEL.META_ARCHITECTURE", "ToyProjNet", "MODEL.TOYPROJ.GAIN", "3.0"])
        print(config_hash(base), config_hash(init), config_hash(gain))
    """)
    proc = subprocess.run([sys.executable, "-c", script], env=_env("/nonexistent", toy_site),
                          capture_output=True, text=True, timeout=300, cwd="/")
    assert proc.returncode == 0, proc.stderr[-3000:]
    base, init, gain = proc.stdout.split()[-3:]
    assert base == init and base != gain


def test_hash_exclusion_must_be_a_model_key():
    from fastreid_ext.config import exclude_from_embedding_hash

    for bad in ("TEST.METRIC", "MODEL", "MODEL..X", 3):
        with pytest.raises(ValueError, match="dotted key under MODEL"):
            exclude_from_embedding_hash(bad)


def test_broken_project_entry_point_raises(tmp_path):
    site = tmp_path / "site"
    info = site / "broken-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[fastreid_ext.projects]\nbroken = no_such_pkg:add_config\n")
    script = "from fastreid_ext.config import register_projects\nregister_projects()\n"
    proc = subprocess.run([sys.executable, "-c", script], env=_env("/nonexistent", str(site)),
                          capture_output=True, text=True, timeout=300, cwd="/")
    assert proc.returncode != 0
    assert "project entry point 'broken'" in proc.stderr and "no_such_pkg" in proc.stderr
