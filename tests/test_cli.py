"""Command-line behaviour of ``fastreid-ext`` and ``tools/*.py``: a missing or unreadable config
is one line on stderr, exit status 2, and no file written; ``--debug`` shows the traceback;
``--weights`` is ``MODEL.WEIGHTS``; every command has ``--help``."""
import os
import subprocess
import sys

import pytest
from conftest import REPO

from fastreid_ext.commands.main import COMMANDS, main


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("command", ["train", "eval"])
def test_config_errors_are_one_line_exit_2_and_leave_no_files(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.yml").write_text("MODEL: [\n")
    (tmp_path / "list.yml").write_text("- 1\n- 2\n")
    (tmp_path / "unknown.yml").write_text("MODEL:\n  NO_SUCH_KEY: 1\n")
    (tmp_path / "base.yml").write_text("_BASE_: missing_base.yml\n")
    cases = {
        (): "--config-file is required",
        ("--config-file", "nope.yml"): "config file 'nope.yml' does not exist",
        ("--config-file", "broken.yml"): "broken.yml' is not valid YAML",
        ("--config-file", "list.yml"): "list.yml' is not a mapping",
        ("--config-file", "unknown.yml"): "key: MODEL.NO_SUCH_KEY",
        ("--config-file", "base.yml"): "missing_base.yml",
        ("--config-file", "Video-Baseline/synthetic_cpu.yml", "SOLVER.NOPE", "1"): "SOLVER.NOPE",
    }
    before = sorted(os.listdir(tmp_path))
    for args, message in cases.items():
        assert main([command, *args]) == 2, args
        assert message in _error_line(capsys), args
    assert sorted(os.listdir(tmp_path)) == before  # no config.yaml, log.txt, lock or logs/ left


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.yml"):
        main(["train", "--config-file", "nope.yml", "--debug"])


def test_the_script_exits_2_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "train_net.py")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: --config-file is required")
    assert len(proc.stderr.strip().splitlines()) == 1 and os.listdir(tmp_path) == []


def test_every_command_has_help(capsys):
    for name in COMMANDS:
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0, name
        assert capsys.readouterr().out.startswith(f"usage: fastreid-ext {name}"), name
    assert main(["--help"]) == 0 and "check-weights" in capsys.readouterr().out
    assert main(["nope"]) == 2


def test_show_results_help_and_missing_file(tmp_path, capsys):
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "show_results.py"), "--help"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "results.json" in proc.stdout
    assert main(["show", str(tmp_path)]) == 2
    assert "results.json' does not exist" in _error_line(capsys)


def test_weights_option_is_model_weights():
    from fastreid_ext.commands.train import parse_args

    new = parse_args(["--config-file", "Video-Baseline/mars.yml", "--weights", "w.pth"], eval_only=True)
    old = parse_args(["--config-file", "Video-Baseline/mars.yml", "--eval-only", "MODEL.WEIGHTS", "w.pth"])
    assert new.opts == old.opts == ["MODEL.WEIGHTS", "w.pth"] and new.eval_only and old.eval_only
    assert new.config_file == old.config_file == os.path.join(REPO, "configs", "Video-Baseline", "mars.yml")


def test_without_faiss_the_import_names_the_extra_to_install():
    code = "import sys; sys.modules['faiss'] = None; import fastreid_ext"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "[cpu] extra (faiss-cpu) or the [gpu] extra (faiss-gpu)" in proc.stderr


def test_without_the_host_the_import_says_how_to_install_it():
    code = "import sys; sys.modules['fastreid'] = None; import fastreid_ext"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "pip install --no-deps fastreid==1.4.0" in proc.stderr
