"""The shape of the code: no import circles among our modules, and no import from a lower layer to
a higher one (a lazy import inside a function counts; `if TYPE_CHECKING:` imports do not).

The layers, lowest first. A module may import its own layer and the ones below it; circles inside
a layer are caught by the circle check."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

LAYERS: list[tuple[str, ...]] = [
    # plain building blocks: no other module of ours above them
    ("core.spec", "core.formatting", "core.images", "core.device", "core.measure", "core.receptive_field",
     "core.design", "core.diagram", "core.models", "core.train.store", "core.train.advice", "core.lab.glyphs",
     "core.lab.oneshot", "core.timm_archs", "core.cka"),
    ("core.registry", "core.links", "core.archs"),            # the table of architectures; any name; links
    ("core.analysis", "core.weights"),                        # the analysis engine; weights by name
    ("core.explain", "core.quiz", "core.notes", "core.features", "core.attribution", "core.patches", "core.erf",
     "core.zoo", "core.classroom", "core.onnx_import"),        # what the pages show of an analysis; model files
    ("core.train.events", "core.train.context", "core.train.data", "core.train.loop"),
    ("core.train.jobs", "core.train.local_runner", "core.train.ray_runner"),   # runners know no task
    ("core.train.transfer", "core.train.lr_finder", "core.train.results", "core.train.pretrain",
     "core.train.run", "core.train.compute", "core.train.changed"),   # the tasks' handlers
    ("core.lab",),
    ("core.figures", "core.design_text"),                     # charts and words the pages and the lecture share
    ("core.lecture", "core.lecture.stops"),                   # the lecture path: its stops as data
    ("core.lecture.panels",),                                 # what each stop shows
    ("core.lecture.prepare",),                                # computed ahead, kept on disk
    ("core.lecture.handout",),                                # the static handout
    ("core.__main__",),
    ("pages",),
    ("app",),
]


def modules(root: Path = ROOT) -> dict[str, Path]:
    out = {}
    for base in ("core", "pages"):
        for p in (root / base).rglob("*.py"):
            name = ".".join(p.relative_to(root).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = p
    out["app"] = root / "app.py"
    return out


def _targets(mods: dict[str, Path], cur: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            pkg = cur.split(".")
            if not mods[cur].name == "__init__.py":
                pkg = pkg[:-1]
            pkg = pkg[: len(pkg) - (node.level - 1)]
            base = ".".join(pkg + ([node.module] if node.module else []))
        names = [base] + [f"{base}.{a.name}" for a in node.names]
    out = set()
    for n in names:
        while n and n not in mods:
            n = n.rpartition(".")[0]
        if n and n != cur and not n.startswith(cur + "."):
            out.add(n)
    return out


def import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    g = {}
    for m, p in mods.items():
        tree = ast.parse(p.read_text(), str(p))
        skip = {id(s) for node in ast.walk(tree)
                if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test) for s in ast.walk(node)}
        g[m] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in skip:
                g[m] |= _targets(mods, m, node)
    return g


def circles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on, stack, out = set(), [], []
    for root in g:
        if root in index:
            continue
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(g.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def layer_of(module: str) -> int | None:
    """The index in LAYERS of the longest prefix that names the module (None: in no layer)."""
    best, rank = -1, None
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, rank = len(p), i
    return rank


def test_the_circle_check_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles():
    assert circles(import_graph(modules())) == []


def test_every_module_has_a_layer():
    assert [m for m in modules() if m not in ("core", "core.train", "core.lab", "core.models") and
            layer_of(m) is None] == []


def test_no_module_imports_a_higher_layer():
    g = import_graph(modules())
    up = [f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})" for m, ts in sorted(g.items())
          for t in sorted(ts) if t not in ("core", "core.train", "core.lab", "core.models")
          and layer_of(m) is not None and layer_of(t) is not None and layer_of(t) > layer_of(m)]
    assert up == []


def test_core_never_imports_streamlit():
    for m, p in modules().items():
        if m.startswith("core"):
            names = {a.name.split(".")[0] for node in ast.walk(ast.parse(p.read_text()))
                     if isinstance(node, ast.Import) for a in node.names}
            names |= {(node.module or "").split(".")[0] for node in ast.walk(ast.parse(p.read_text()))
                      if isinstance(node, ast.ImportFrom)}
            assert "streamlit" not in names, m
