"""atomic_write_json: the bytes json.dump writes, published atomically."""
import json
import os

import pytest

from fastreid_ext.utils.safe_io import atomic_write_json, new_file_mode


@pytest.mark.parametrize("kwargs", [{}, {"indent": 1}, {"indent": 2, "sort_keys": True}, {"separators": (",", ":")}])
def test_writes_what_json_dump_writes(tmp_path, kwargs):
    obj = {"b": [1, 2.5, None], "a": {"x": "é", "y": True}}
    ref, out = tmp_path / "ref.json", tmp_path / "sub" / "out.json"
    with open(ref, "w") as f:
        json.dump(obj, f, **kwargs)
    atomic_write_json(str(out), obj, **kwargs)
    assert out.read_bytes() == ref.read_bytes()
    assert os.stat(out).st_mode & 0o777 == new_file_mode()
    assert sorted(os.listdir(out.parent)) == ["out.json"]  # no temporary file left


def test_an_object_json_cannot_encode_keeps_the_old_file(tmp_path):
    path = tmp_path / "state.json"
    atomic_write_json(str(path), {"n": 1})
    with pytest.raises(TypeError):
        atomic_write_json(str(path), {"n": object()})
    assert json.loads(path.read_text()) == {"n": 1}
    assert os.listdir(tmp_path) == ["state.json"]
