"""Checkpoints are written atomically: a failed or interrupted write never damages the last one."""
import os

import pytest
import torch
from torch import nn

import fastreid_ext  # noqa: F401
from fastreid_ext.engine.checkpoint import AtomicCheckpointer, atomic_write


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write(str(path), lambda f: f.write(b"old"))

    def broken(f):
        f.write(b"partial")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(str(path), broken)
    assert path.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["f.bin"]  # no temporary left behind


def test_checkpointer_round_trip_and_tag(tmp_path):
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    ck = AtomicCheckpointer(model, str(tmp_path), optimizer=opt)
    ck.save("model_0003", epoch=3)
    assert (tmp_path / "last_checkpoint").read_text() == "model_0003.pth"
    assert ck.has_checkpoint()

    model2 = nn.Linear(3, 2)
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.1, momentum=0.9)
    extra = AtomicCheckpointer(model2, str(tmp_path), optimizer=opt2).resume_or_load("", resume=True)
    assert extra["epoch"] == 3
    torch.testing.assert_close(model2.weight, model.weight)
    assert opt2.state_dict()["state"][0]["momentum_buffer"].shape == (2, 3)
