"""The layout's one rule, checked by parsing every import with `ast`: packages import only packages below them,
and no two modules (or folders) import each other, directly or around a circle.

LAYERS is the allowed order, bottom first; it is stated here and nowhere else. Every import counts, including
the ones inside functions (a lazy import is still a dependency). Scripts at the top level and `benchmarks/` may
import any package; no package may import a script.
"""

import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LAYERS = (
    "dnnlib",  # EasyDict, UserError: no torch
    "torch_utils",  # custom ops, their JIT builder, shape and mask checks
    "data",  # image decoding, dataset archives, mask generators
    "training",  # networks, loss, snapshots, the training loop
    "converters",  # official TF pickles and the PyTorch port's .pth files -> our snapshot format
    "inference",  # loading any network file, fitting images, the fast CPU path, inpainting seeds
    "metrics",  # the metric registry, FID, IDS, pixel metrics, baselines
    "demo_lib",  # demo.py's helpers
    "app_lib",  # app.py's helpers: uploads, the inference worker, the HTTP routes
)
SCRIPT_LAYER = len(LAYERS)  # top-level *.py and benchmarks/: free to import any package
SKIP_DIRS = {".git", ".venv", "tests", "__pycache__", "results", "runs", "out", "ops_cuda", "docs", "node_modules"}


def _modules():
    """{dotted module name: path} of every Python file of the project outside tests/."""
    found = {}
    for root, dirs, files in os.walk(REPO):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        for name in files:
            if not name.endswith(".py"):
                continue
            rel = os.path.relpath(os.path.join(root, name), REPO)[:-3].split(os.sep)
            if rel[-1] == "__init__":
                rel = rel[:-1]
            found[".".join(rel)] = os.path.join(root, name)
    return found


def _imports(path, module, known):
    """Project modules imported by the file at `path` (absolute and relative imports, at any depth)."""
    tree = ast.parse(open(path, encoding="utf-8").read(), filename=path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(p for p in parts + [base] if p)
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            # The longest project module that the name starts with ("inference.fast_path.attach" -> the file).
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


def _layer(module):
    top = module.split(".")[0]
    return LAYERS.index(top) if top in LAYERS else SCRIPT_LAYER


def _graph():
    known = _modules()
    return {m: _imports(p, m, known) for m, p in known.items()}


def _find_cycle(edges):
    """One cycle of the directed graph `edges` as a list of nodes, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def _package_edges(graph):
    edges = {}
    for module, deps in graph.items():
        top = module.split(".")[0]
        if top not in LAYERS:
            continue
        edges.setdefault(top, set()).update(d.split(".")[0] for d in deps if d.split(".")[0] != top)
    return edges


def test_every_top_level_package_is_in_the_layer_list():
    tops = {m.split(".")[0] for m, p in _modules().items() if p.endswith("__init__.py") and "." not in m}
    assert tops - {"benchmarks"} == set(LAYERS), "add the new package to LAYERS (in its place) or remove it"


def test_packages_import_only_packages_below_them():
    wrong = [f"{m} imports {d}" for m, deps in _graph().items() for d in sorted(deps)
             if _layer(m) < SCRIPT_LAYER and _layer(d) > _layer(m)]
    assert not wrong, "imports that point up the layers " + " > ".join(LAYERS) + ":\n" + "\n".join(wrong)


def test_no_package_imports_a_script():
    wrong = [f"{m} imports {d}" for m, deps in _graph().items() for d in sorted(deps)
             if _layer(m) < SCRIPT_LAYER and _layer(d) == SCRIPT_LAYER]
    assert not wrong, "\n".join(wrong)


def test_no_import_circles_between_modules_or_folders():
    graph = _graph()
    assert _find_cycle(graph) is None, "module import circle: " + " -> ".join(_find_cycle(graph))
    folders = _package_edges(graph)
    assert _find_cycle(folders) is None, "folder import circle: " + " -> ".join(_find_cycle(folders))


# The checker itself must be able to fail: fed a made-up tree, it reports what it should.


def test_checker_sees_upward_lazy_and_relative_imports(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "__init__.py").write_text("")
    (tmp_path / "data" / "a.py").write_text("def f():\n    from training import loop\n")
    (tmp_path / "data" / "b.py").write_text("from . import a\nfrom .a import f\n")
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "__init__.py").write_text("")
    (tmp_path / "training" / "loop.py").write_text("import data.b\n")
    known = {"data": "", "data.a": "", "data.b": "", "training": "", "training.loop": ""}
    assert _imports(str(tmp_path / "data" / "a.py"), "data.a", known) == {"training", "training.loop"}
    assert _imports(str(tmp_path / "data" / "b.py"), "data.b", known) == {"data", "data.a"}
    graph = {"data.a": {"training.loop"}, "data.b": {"data.a"}, "training.loop": {"data.b"}}
    assert _find_cycle(graph) == ["data.a", "training.loop", "data.b", "data.a"]
    assert _layer("data.a") < _layer("training.loop")
    assert _find_cycle(_package_edges(graph)) == ["data", "training", "data"]


@pytest.mark.parametrize("edges", [{"a": {"b"}, "b": set()}, {"a": set()}])
def test_checker_passes_a_clean_graph(edges):
    assert _find_cycle(edges) is None


def test_every_module_opens_with_what_it_owns():
    missing = [os.path.relpath(p, REPO) for p in _modules().values()
               if not (ast.get_docstring(ast.parse(open(p, encoding="utf-8").read())) or "").strip()]
    assert not missing, "modules without an opening docstring: " + ", ".join(missing)
