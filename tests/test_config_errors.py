"""Bad configuration gets a clear error: unknown keys, losses, datasets."""
import pytest
import torch

import fastreid_ext  # noqa: F401
from fastreid_ext.config import build_config, get_cfg
from fastreid_ext.modeling.losses import build_losses, known_losses


def test_device_defaults_to_what_is_available():
    cfg = get_cfg()
    assert cfg.MODEL.DEVICE == ("cuda" if torch.cuda.is_available() else "cpu")


def test_add_ext_config_twice_is_harmless():
    cfg = get_cfg()
    cfg.INPUT.VIDEO.SEQ_LEN = 7
    fastreid_ext.add_ext_config(cfg)
    assert cfg.INPUT.VIDEO.SEQ_LEN == 7


def test_unknown_config_key_in_file(tmp_path):
    yml = tmp_path / "bad.yml"
    yml.write_text("MODEL:\n  NOT_A_KEY: 3\n")
    with pytest.raises(KeyError, match="NOT_A_KEY"):
        build_config(str(yml))


def test_unknown_config_key_in_overrides():
    with pytest.raises(KeyError, match="SOLVER.NOPE"):
        build_config("", ["SOLVER.NOPE", "1"])


def test_base_inheritance_is_relative_to_the_yaml(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "Base.yml").write_text("INPUT:\n  VIDEO:\n    SEQ_LEN: 6\n")
    (tmp_path / "sub" / "child.yml").write_text("_BASE_: ../Base.yml\nSOLVER:\n  BASE_LR: 0.123\n")
    cfg = build_config(str(tmp_path / "sub" / "child.yml"))
    assert cfg.INPUT.VIDEO.SEQ_LEN == 6 and cfg.SOLVER.BASE_LR == 0.123


def test_unknown_loss_name_lists_known_ones():
    cfg = get_cfg()
    cfg.MODEL.LOSSES.NAME = ("CrossEntropyLoss", "NoSuchLoss")
    with pytest.raises(KeyError) as e:
        build_losses(cfg, feat_dim=8, num_classes=4)
    msg = str(e.value)
    assert "NoSuchLoss" in msg and "CrossEntropyLoss" in msg and "TripletLoss" in msg


def test_duplicate_loss_name_rejected():
    cfg = get_cfg()
    cfg.MODEL.LOSSES.NAME = ("TripletLoss", "TripletLoss")
    with pytest.raises(ValueError, match="duplicate"):
        build_losses(cfg, feat_dim=8, num_classes=4)


def test_host_and_plugin_losses_share_one_registry():
    assert {"CrossEntropyLoss", "TripletLoss", "CircleLoss", "Cosface"} <= set(known_losses())


def test_host_ce_through_registry_matches_host_function():
    from fastreid.modeling.losses import cross_entropy_loss
    from fastreid.utils.events import EventStorage

    cfg = get_cfg()
    cfg.MODEL.LOSSES.NAME = ("CrossEntropyLoss",)
    cfg.MODEL.LOSSES.CE.EPSILON = 0.1
    cfg.MODEL.LOSSES.CE.SCALE = 0.5
    losses = build_losses(cfg, feat_dim=8, num_classes=5)
    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([0, 1, 2, 3, 4, 0])
    with EventStorage(0):
        out = losses({"cls_outputs": logits, "pred_class_logits": logits}, targets)
    assert set(out) == {"loss_cls"}
    torch.testing.assert_close(out["loss_cls"], 0.5 * cross_entropy_loss(logits, targets, 0.1, 0.2))


def test_loss_missing_head_output_is_a_clear_error():
    cfg = get_cfg()
    cfg.MODEL.LOSSES.NAME = ("TripletLoss",)
    losses = build_losses(cfg, feat_dim=8, num_classes=5)
    with pytest.raises(KeyError, match="features"):
        losses({"cls_outputs": torch.zeros(2, 5)}, torch.tensor([0, 1]))
