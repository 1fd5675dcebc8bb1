"""Dataset items (``fastreid_ext.data.items``): the typed item, its tuple compatibility with the
host's code, extras, and the host samplers fed with items that carry extras."""
import pytest

import fastreid_ext  # noqa: F401  (compat shims first)
from fastreid.data.datasets.bases import Dataset
from fastreid.data.samplers import BalancedIdentitySampler
from fastreid_ext.data.items import Item, as_item, extras_of, host_sampler_items, with_extras


def test_as_item_accepts_the_host_and_plugin_forms():
    host = ("a.jpg", 3, 1)
    item = as_item(host)
    assert item == Item("a.jpg", 3, 1, {}) and (item.paths, item.pid, item.camid, item.extras) == ("a.jpg", 3, 1, {})
    extras = {"group": "g"}
    four = as_item((("f1", "f2"), "x_1", "x_0", extras))
    assert four.extras is extras and four[:3] == (("f1", "f2"), "x_1", "x_0")
    assert as_item(four) is four
    # a fresh extras dict per converted 3-tuple: filling one item's extras never leaks into another
    a, b = as_item(host), as_item(host)
    a.extras["k"] = 1
    assert b.extras == {}


@pytest.mark.parametrize("bad", [("a.jpg", 1), ("a.jpg", 1, 2, "not a dict"), ("a.jpg", 1, 2, {}, 5)])
def test_as_item_rejects_other_shapes(bad):
    with pytest.raises(ValueError, match="an item is"):
        as_item(bad)


def test_extras_of_reads_any_form():
    assert extras_of(("a", 1, 2)) == {} and extras_of(Item("a", 1, 2, {"k": 1})) == {"k": 1}
    assert extras_of(("a", 1, 2, "x")) == {}


def test_with_extras_merges_without_touching_the_input():
    items = [("a.jpg", 1, 0), Item(("b",), 2, 1, {"group": "g"})]
    out = with_extras(items, keypoints="kp.json")
    assert out == [Item("a.jpg", 1, 0, {"keypoints": "kp.json"}),
                   Item(("b",), 2, 1, {"group": "g", "keypoints": "kp.json"})]
    assert items[1].extras == {"group": "g"}


def test_items_index_like_the_hosts_tuples():
    items = [Item(("a", "b"), 7, 0, {"group": "g"}), Item(("c",), 9, 1, {})]
    # fastreid/data/datasets/bases.py:96-97 reads item[1] / item[2]
    assert Dataset.parse_data(None, items) == (2, 2)


def test_host_balanced_sampler_runs_on_items_with_extras():
    """The host's BalancedIdentitySampler unpacks three values per item
    (fastreid/data/samplers/triplet_sampler.py:90): fed through host_sampler_items it draws the
    same indices as on the plain (paths, pid, camid) tuples."""
    plain = [((f"f{i}",), f"p{i % 4}", f"c{i % 3}") for i in range(24)]
    items = with_extras(plain, keypoints="kp.json")
    with pytest.raises(ValueError):  # the host unpacking of an Item itself
        list(zip(range(8), iter(BalancedIdentitySampler(items, 8, 2, seed=0))))
    got = [i for _, i in zip(range(40), iter(BalancedIdentitySampler(host_sampler_items(items), 8, 2, seed=0)))]
    ref = [i for _, i in zip(range(40), iter(BalancedIdentitySampler(plain, 8, 2, seed=0)))]
    assert got == ref
