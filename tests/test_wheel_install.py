"""The wheel is a complete package: built from the sources, ``pip install``-ed (dependency
resolution included, no ``--no-deps``, no ``--target``) into a fresh virtual environment outside
the repository, whose own ``fastreid-ext`` command trains and evaluates a shipped config found by
name on a tiny synthetic set, from a folder outside the checkout. The evaluation of the saved
weights reproduces the metrics the training run reported (same model, same test set).

The fresh environment gets its third-party dependencies (torch, faiss, the host ``fastreid``, ...)
from this interpreter's site-packages through a ``.pth`` line, and pip resolves against them with
``--no-index``: a 6 GB torch download per run is avoided, while pip still checks every declared
requirement. The wheel's own copy of ``fastreid_ext`` and the projects sits first on ``sys.path``,
and the test checks that it, not the checkout's editable copy, is what runs.
"""
import glob
import json
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest
from conftest import REPO

SOURCES = ("pyproject.toml", "setup.py", "README.md", "LICENSE", "fastreid_ext", "configs", "projects")
TINY = ["INPUT.SIZE_TRAIN", "[32,16]", "INPUT.SIZE_TEST", "[32,16]", "INPUT.PADDING.SIZE", "2",
        "SOLVER.MAX_EPOCH", "2", "SOLVER.IMS_PER_BATCH", "8", "DATALOADER.NUM_INSTANCE", "2",
        "DATALOADER.NUM_WORKERS", "0", "DATALOADER.NUM_WORKERS_TEST", "0", "TEST.VIDEO.MAX_CLIPS", "2",
        "TEST.VIDEO.SEQ_LEN", "2", "INPUT.VIDEO.SEQ_LEN", "2", "SEED", "0"]


def _fresh_venv(folder):
    """A new virtual environment from the base interpreter of this one, without pip (this pip
    installs into it through ``--python``); this interpreter's site-packages is appended to its
    ``sys.path`` by a ``.pth`` line, for the dependencies only. Returns ``(site-packages, python)``."""
    base = getattr(sys, "_base_executable", sys.executable)
    proc = subprocess.run([base, "-m", "venv", "--without-pip", str(folder)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    python = str(folder / "bin" / "python")
    query = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = subprocess.run([python, "-c", query], capture_output=True, text=True, check=True).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    with open(os.path.join(site, "_suite_dependencies.pth"), "w") as f:
        f.write("\n".join(sorted(ours)) + "\n")
    return pathlib.Path(site), python


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``(site-packages, env, work folder, wheel, python)``: the wheel installed into a fresh
    environment whose interpreter is ``python``."""
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
    site, python = _fresh_venv(tmp / "venv")
    proc = subprocess.run(pip + ["--python", python, "install", "--no-index", "--no-compile", wheels[0]], **run)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    work = tmp / "work"
    work.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", FASTREID_DATASETS=str(tmp / "data"))
    env.pop("PYTHONPATH", None)
    return site, env, work, wheels[0], python


def _run(installed, *args, module=None, python=False):
    """Run the fresh environment's ``fastreid-ext`` (or ``python -m module`` / ``python`` with
    ``args``) from the work folder outside the repository."""
    site, env, work, _, py = installed
    cmd = [py] if python else [py, "-m", module] if module else [os.path.join(os.path.dirname(py), "fastreid-ext")]
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
from importlib.metadata import distribution
print(fastreid_ext.__file__, fgreid.__file__, find_config("FGReID/MARS/fgreid.yml"),
      distribution("fastreid-ext").locate_file("fastreid_ext"))
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
    assert all(p.startswith(site) for p in out[:4]), out[:4]  # not the checkout's copy
    assert out[4] == "FGReID"  # its _BASE_ chain (../Base-FGReID.yml ...) resolved in the wheel
    usage = _run(installed, "--help")
    for command in ("train", "eval", "extract", "index", "search", "export", "show", "check-weights"):
        assert f"  {command} " in usage
        assert f"help {command}\n" in text


def test_installed_command_trains_and_evaluates_a_shipped_config(installed):
    site, env, work, _, _ = installed
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
