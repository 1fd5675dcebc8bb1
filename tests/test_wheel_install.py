"""The wheel is a complete package: built from the sources, installed outside the repository
(``pip install --no-deps --target``, this interpreter's torch and dependencies), its
``fastreid-ext`` command trains and evaluates a shipped config found by name on a tiny synthetic
set, from a folder outside the checkout. The evaluation of the saved weights reproduces the
metrics the training run reported (same model, same test set)."""
import glob
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
from conftest import REPO

SOURCES = ("pyproject.toml", "setup.py", "README.md", "LICENSE", "fastreid_ext", "configs", "projects")
TINY = ["INPUT.SIZE_TRAIN", "[32,16]", "INPUT.SIZE_TEST", "[32,16]", "INPUT.PADDING.SIZE", "2",
        "SOLVER.MAX_EPOCH", "2", "SOLVER.IMS_PER_BATCH", "8", "DATALOADER.NUM_INSTANCE", "2",
        "DATALOADER.NUM_WORKERS", "0", "DATALOADER.NUM_WORKERS_TEST", "0", "TEST.VIDEO.MAX_CLIPS", "2",
        "TEST.VIDEO.SEQ_LEN", "2", "INPUT.VIDEO.SEQ_LEN", "2", "SEED", "0"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``(site folder, env, work folder)``: the wheel installed into ``site``."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "*.pyc")
    for name in SOURCES:
        path = os.path.join(REPO, name)
        if os.path.isdir(path):
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy(path, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    run = dict(capture_output=True, text=True, timeout=600)
    proc = subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(src)], **run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    wheels = glob.glob(str(tmp / "dist" / "fastreid_ext-*.whl"))
    assert len(wheels) == 1, wheels
    site = tmp / "site"
    proc = subprocess.run(pip + ["install", "--no-deps", "--no-compile", "--target", str(site), wheels[0]], **run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    work = tmp / "work"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site), OMP_NUM_THREADS="1", FASTREID_DATASETS=str(tmp / "data"))
    return site, env, work, wheels[0]


def _run(installed, *args, module=None, python=False):
    """Run the installed ``fastreid-ext`` (or ``python -m module`` / ``python`` with ``args``)
    from the work folder outside the repository."""
    site, env, work, _ = installed
    cmd = [sys.executable] if python else [sys.executable, "-m", module] if module else \
        [sys.executable, str(site / "bin" / "fastreid-ext")]
    proc = subprocess.run(cmd + list(args), env=env, cwd=work, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (args, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc.stdout


def test_the_wheel_ships_configs_and_the_command(installed):
    names = zipfile.ZipFile(installed[3]).namelist()
    assert "fastreid_ext/_configs/configs/Video-Baseline/mars.yml" in names
    assert "fastreid_ext/_configs/projects/MGRAFA/configs/Base-MGRAFA.yml" in names
    assert any(n.endswith("entry_points.txt") for n in names)
    for pkg in ("fgreid", "mgrafa", "mgre", "fgpose"):
        assert f"{pkg}/__init__.py" in names


HELP_ALL = """
import contextlib, io, sys
import fastreid_ext, fgreid
from fastreid_ext.commands.main import COMMANDS, main
from fastreid_ext.config import build_config, find_config
print(fastreid_ext.__file__, fgreid.__file__, find_config("FGReID/MARS/fgreid.yml"))
print(build_config("FGReID/MARS/fgreid.yml").MODEL.META_ARCHITECTURE)
for name in COMMANDS:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main([name, "--help"])
        except SystemExit as e:
            assert e.code == 0, (name, e.code)
    assert out.getvalue().startswith("usage: fastreid-ext " + name), (name, out.getvalue()[:200])
    print("help", name)
"""


def test_installed_package_runs_from_outside_the_repository(installed):
    site = str(installed[0])
    text = _run(installed, "-c", HELP_ALL, python=True)
    out = text.split()
    assert all(p.startswith(site) for p in out[:3]), out[:3]  # not the checkout's copy
    assert out[3] == "FGReID"  # its _BASE_ chain (../Base-FGReID.yml ...) resolved in the wheel
    usage = _run(installed, "--help")
    for command in ("train", "eval", "extract", "index", "search", "export", "show", "check-weights"):
        assert f"  {command} " in usage
        assert f"help {command}\n" in text


def test_installed_command_trains_and_evaluates_a_shipped_config(installed):
    site, env, work, _ = installed
    _run(installed, "--layout", "mars", "--out", env["FASTREID_DATASETS"] + "/synthetic/mars", "--ids", "16",
         "--frame-size", "32", "16", "--min-len", "4", "--max-len", "8", "--cameras", "3", "--workers", "1",
         module="fastreid_ext.data.synthetic")
    _run(installed, "train", "--config-file", "Video-Baseline/synthetic_cpu.yml", *TINY, "OUTPUT_DIR", "run")
    with open(work / "run" / "results.json") as f:
        trained = json.load(f)
    _run(installed, "eval", "--config-file", "Video-Baseline/synthetic_cpu.yml", "--weights",
         "run/model_final.pth", *TINY, "OUTPUT_DIR", "evaluated")
    with open(work / "evaluated" / "results.json") as f:
        evaluated = json.load(f)
    for key in ("mAP", "Rank-1", "mINP"):
        assert evaluated[key] == pytest.approx(trained[key], abs=1e-6), key
    table = _run(installed, "show", "run")
    assert f"{trained['mAP']:.2f}" in table
    assert not os.path.exists(os.path.join(REPO, "run"))
