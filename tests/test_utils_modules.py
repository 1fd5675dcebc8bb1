"""The one definition of ``unwrap`` / ``model_device`` that the engine and the evaluation share."""
import torch
from torch import nn

from fastreid_ext.utils.modules import model_device, unwrap


def test_unwrap_and_model_device():
    import fastreid_ext.engine.precise_bn as precise_bn
    import fastreid_ext.engine.train_loop as train_loop
    import fastreid_ext.evaluation.inference as inference

    lin = nn.Linear(2, 2)
    assert unwrap(lin) is lin and unwrap(nn.DataParallel(lin)) is lin
    assert model_device(lin) == torch.device("cpu") and model_device(nn.DataParallel(lin)) == torch.device("cpu")
    buffers_only = nn.BatchNorm1d(2, affine=False)
    assert model_device(buffers_only) == buffers_only.running_mean.device
    assert model_device(nn.Identity()) == torch.device("cpu")
    for mod in (train_loop, inference, precise_bn):  # every user imports the same functions
        assert getattr(mod, "model_device") is model_device
    for mod in (train_loop, precise_bn, inference):
        assert getattr(mod, "unwrap") is unwrap
