"""The package's import structure (``tools/import_graph.py``): no cycle, no import against the
declared layer order; and the tool itself on hand-made packages."""
import importlib.util
import os

import pytest
from conftest import REPO


def _tool():
    spec = importlib.util.spec_from_file_location("import_graph", os.path.join(REPO, "tools", "import_graph.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ig = _tool()


def test_fastreid_ext_has_no_cycle_and_no_upward_import():
    graph = ig.build_graph(REPO)
    assert "fastreid_ext.evaluation.retrieval" in graph and len(graph) > 50  # the real package was read
    assert ig.find_cycles(graph) == []
    assert ig.upward_imports(graph) == []


def test_every_component_has_a_layer():
    rank = ig.layer_index()
    comps = {ig.component(m) for m in ig.build_graph(REPO)}
    assert comps <= set(rank), sorted(comps - set(rank))


def _write(root, files):
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)


@pytest.fixture()
def toy(tmp_path):
    """``fastreid_ext`` with a low ``utils`` and a high ``engine``; each test adds imports."""
    _write(tmp_path, {
        "fastreid_ext/__init__.py": "",
        "fastreid_ext/utils/__init__.py": "",
        "fastreid_ext/utils/a.py": "import os\n",
        "fastreid_ext/utils/b.py": "",
        "fastreid_ext/engine/__init__.py": "",
        "fastreid_ext/engine/c.py": "from fastreid_ext.utils import a\nfrom ..utils.b import x\n",
    })
    return tmp_path


def test_edges_resolve_absolute_relative_and_function_local_imports(toy):
    _write(toy, {"fastreid_ext/utils/b.py": "def f():\n    from . import a\n    import fastreid_ext.utils\n"})
    g = ig.build_graph(str(toy))
    assert g["fastreid_ext.engine.c"] == {"fastreid_ext.utils.a", "fastreid_ext.utils.b"}
    assert g["fastreid_ext.utils.b"] == {"fastreid_ext.utils.a", "fastreid_ext.utils"}
    assert g["fastreid_ext.utils.a"] == set()  # ``import os`` is not in the package


def test_a_function_local_cycle_is_found(toy):
    _write(toy, {"fastreid_ext/utils/a.py": "from .b import y\n",
                 "fastreid_ext/utils/b.py": "def f():\n    from .a import z\n"})
    g = ig.build_graph(str(toy))
    assert ig.find_cycles(g) == [["fastreid_ext.utils.a", "fastreid_ext.utils.b"]]
    text, problems = ig.report(g)
    assert problems == 1 and "cycles: 1" in text


def test_an_upward_import_and_a_sibling_import_are_reported(toy):
    _write(toy, {"fastreid_ext/utils/b.py": "def f():\n    from fastreid_ext.engine import c\n",
                 "fastreid_ext/compat.py": "from fastreid_ext.utils import a\n"})
    g = ig.build_graph(str(toy))
    assert ig.find_cycles(g) == [["fastreid_ext.engine.c", "fastreid_ext.utils.b"]]
    # utils -> engine goes up; compat -> utils crosses to another component of the same layer
    assert ig.upward_imports(g) == [("fastreid_ext.compat", "fastreid_ext.utils.a"),
                                    ("fastreid_ext.utils.b", "fastreid_ext.engine.c")]
    assert ig.upward_imports(g, layers=(("utils",), ("compat",), ("engine",), ("",))) == [
        ("fastreid_ext.utils.b", "fastreid_ext.engine.c")]


def test_a_component_without_a_layer_is_an_error(toy):
    _write(toy, {"fastreid_ext/newpart/__init__.py": "from fastreid_ext.utils import a\n"})
    with pytest.raises(ValueError, match="'newpart'.*no layer"):
        ig.upward_imports(ig.build_graph(str(toy)))


def test_main_exits_1_on_a_problem(toy, capsys):
    assert ig.main(["--root", str(toy)]) == 0
    _write(toy, {"fastreid_ext/utils/b.py": "from fastreid_ext.engine.c import q\n"})
    assert ig.main(["--root", str(toy)]) == 1
    assert "fastreid_ext.utils.b -> fastreid_ext.engine.c" in capsys.readouterr().out
