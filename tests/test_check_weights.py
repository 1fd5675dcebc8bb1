"""``fastreid-ext check-weights``: SHA-256 against ``--sha256`` or the torch.hub hash prefix of
the file name (hashlib in the test as the reference), a loadable state dict, and every backbone
convolution of a config present with its shape. The README names, for every shipped config that
starts from ImageNet weights, the host release file its backbone expects."""
import hashlib
import os

import pytest
import torch
from conftest import REPO

import fastreid_ext  # noqa: F401
from fastreid.modeling.backbones import build_backbone
from fastreid_ext.commands.main import main
from fastreid_ext.config import build_config, list_configs
from fastreid_ext.modeling.video_utils import host_pretrained_url

CONFIG = "Video-Baseline/synthetic_cpu.yml"  # ResNet-18, like torchvision's resnet18


def _backbone_file(tmp_path, name, drop=None):
    state = build_backbone(build_config(CONFIG)).state_dict()
    if drop:
        state.pop(drop)
    path = tmp_path / "tmp.pth"
    torch.save(state, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    final = tmp_path / name.format(hash8=digest[:8])
    os.replace(path, final)
    return str(final), digest


def test_hash_from_the_file_name_and_backbone_coverage(tmp_path, capsys):
    path, digest = _backbone_file(tmp_path, "resnet18-{hash8}.pth")
    assert main(["check-weights", path, "--config-file", CONFIG]) == 0
    out = capsys.readouterr().out
    assert digest in out and "hash: OK" in out and "every convolution found" in out
    assert "resnet18-5c106cde.pth" in out  # the release the config's backbone expects

    wrong = tmp_path / "resnet18-00000000.pth"
    os.replace(path, wrong)
    assert main(["check-weights", str(wrong)]) == 1
    assert "hash: MISMATCH" in capsys.readouterr().out
    assert main(["check-weights", str(wrong), "--sha256", digest]) == 0  # an explicit digest wins


def test_a_missing_convolution_and_unreadable_files_fail(tmp_path, capsys):
    path, _ = _backbone_file(tmp_path, "backbone.pth", drop="layer4.1.conv2.weight")
    assert main(["check-weights", path, "--config-file", CONFIG]) == 1
    out = capsys.readouterr().out
    assert "hash: not checked" in out and "layer4.1.conv2.weight" in out and "FAILED: backbone" in out
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    assert main(["check-weights", str(tmp_path / "junk.pth")]) == 2
    assert "cannot be loaded" in capsys.readouterr().err
    assert main(["check-weights", str(tmp_path / "nope.pth")]) == 2


def test_readme_names_the_weights_every_shipped_config_expects():
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    expected = {}
    for name in list_configs():
        if os.path.basename(name).startswith("Base"):
            continue
        cfg = build_config(name)
        if cfg.MODEL.BACKBONE.PRETRAIN:
            url = host_pretrained_url(cfg)
            assert url, f"{name}: a pre-trained backbone without a host release"
            expected.setdefault(url, []).append(name)
    assert expected, "no shipped config starts from ImageNet weights?"
    for url, names in expected.items():
        assert url in readme and os.path.basename(url) in readme, (url, names)


@pytest.mark.parametrize("name", ["Video-Baseline/mars.yml", "configs/Video-Baseline/mars.yml", "Video-Baseline/mars"])
def test_config_names_resolve_to_the_shipped_file(name):
    from fastreid_ext.config import find_config

    assert os.path.samefile(find_config(name), os.path.join(REPO, "configs", "Video-Baseline", "mars.yml"))
