"""The import rule of docs/architecture.md, checked on the real import graph (ast, every import
in every module of src/seqlab, including those inside functions and under TYPE_CHECKING).

A package may import only from its own layer's "may use" list and the layers below it; the
applications (translate, caption, series) never import each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "seqlab"

# Top to bottom; each entry: the packages/modules of a layer. Keep in step with
# docs/architecture.md ("Layers").
LAYERS: list[list[str]] = [
    ["__main__", "cli", "studio"],             # entry points: parse, call, print
    ["gates", "runs"],                         # work on the applications' trained runs
    ["translate", "caption", "series"],        # the applications (independent of each other)
    ["text", "decoding", "training", "viz", "export"],   # shared tools
    ["nn"],                                    # building blocks: gates, LSTM, attention, decoder
    ["device", "io", "validate", "errors"],    # foundation
]
INDEPENDENT = {"translate", "caption", "series"}
# Within one layer other than the applications, imports are allowed (text uses training's
# checkpoint helpers, for example); these may not go back up:
FOUNDATION = {"device": {"errors"}, "io": {"errors", "validate"}, "validate": {"errors"},
              "errors": set()}


def layer_of(name: str) -> int:
    for i, layer in enumerate(LAYERS):
        if name in layer:
            return i
    raise AssertionError(f"seqlab.{name} is in no layer: add it to LAYERS here and to "
                         "docs/architecture.md")


def unit_of(path: Path, root: Path = SRC) -> str:
    """The top-level package or module of seqlab a file belongs to."""
    rel = path.relative_to(root)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imports(path: Path, root: Path = SRC) -> set[str]:
    """The seqlab units a module imports (absolute and relative imports)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    pkg = path.relative_to(root.parent).with_suffix("").parts[:-1]   # ("seqlab", "nn")
    found = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(pkg[:len(pkg) - node.level + 1])
                names = [".".join(base + ([node.module] if node.module else []))]
            elif node.module:
                names = [node.module]
            if names == ["seqlab"]:        # from seqlab import nn, errors
                names = [f"seqlab.{a.name}" for a in node.names]
        for n in names:
            parts = n.split(".")
            # a submodule of seqlab (not a name from its __init__, like __version__)
            if parts[0] == "seqlab" and len(parts) > 1 and (
                    (root / parts[1]).is_dir() or (root / f"{parts[1]}.py").is_file()):
                found.add(parts[1])
    return found


def edges(root: Path = SRC) -> list[tuple[str, str, Path]]:
    out = []
    for path in sorted(root.rglob("*.py")):
        src = unit_of(path, root)
        if src == "__init__":
            continue
        out.extend((src, dst, path) for dst in imports(path, root) if dst != src)
    return out


def violations(found: list[tuple[str, str, Path]]) -> list[str]:
    bad = []
    for src, dst, path in found:
        if src in INDEPENDENT and dst in INDEPENDENT:
            bad.append(f"{path}: application {src} imports application {dst}")
        elif layer_of(dst) < layer_of(src):
            bad.append(f"{path}: {src} (layer {layer_of(src)}) imports {dst} "
                       f"(layer {layer_of(dst)}, above it)")
        elif src in FOUNDATION and dst not in FOUNDATION[src]:
            bad.append(f"{path}: {src} imports {dst}")
    return bad


def test_the_graph_is_read():
    found = {(s, d) for s, d, _ in edges()}
    assert ("translate", "nn") in found and ("cli", "translate") in found   # known edges
    assert ("nn", "device") in found


def test_every_unit_has_a_layer():
    for path in SRC.rglob("*.py"):
        if unit_of(path) != "__init__":
            layer_of(unit_of(path))


def test_imports_point_down_and_applications_are_independent():
    bad = violations(edges())
    assert not bad, "\n".join(bad)


def test_the_rule_catches_upward_and_sideways_imports(tmp_path):
    """The checker itself, on a fake tree: nn importing translate (absolute, relative, inside a
    function) and caption importing translate are reported; translate importing nn is not."""
    root = tmp_path / "seqlab"
    (root / "nn").mkdir(parents=True)
    (root / "caption").mkdir()
    (root / "translate").mkdir()
    (root / "nn" / "a.py").write_text("from seqlab.translate import api\n")
    (root / "nn" / "b.py").write_text("def f():\n    from ..translate.api import x\n")
    (root / "caption" / "c.py").write_text("import seqlab.translate.model\n")
    (root / "translate" / "d.py").write_text("from seqlab import nn\nfrom . import model\n")
    found = edges(root)
    assert {(s, d) for s, d, _ in found} == {("nn", "translate"), ("caption", "translate"),
                                             ("translate", "nn")}
    bad = violations(found)
    assert len(bad) == 3, bad
    assert not any("d.py" in b for b in bad)
