"""The top-level modules of modeling_asda are exactly what a checkpoint carries, and nothing else leaks in."""

import ast
import graphlib
import sys
from pathlib import Path

from modeling_asda import ASDAConfig, ASDAForReferringSegmentation, ASDAProcessor

PACKAGE = Path(__file__).resolve().parent.parent / "modeling_asda"
# The classes a checkpoint names in auto_map / custom_pipelines live in these files.
ENTRY_POINTS = ("configuration_asda", "modeling_asda", "image_processing_asda", "processing_asda", "pipeline_asda")


def top_level_modules() -> set[str]:
    return {path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__"}


def imports_of(module: str) -> tuple[set[str], set[str]]:
    """(relative imports as module names, absolute imports of this package) of one top-level module."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    relative, absolute = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            # `from . import x` names x itself; `from .x import y` names x; a level above 1 leaves the package.
            names = [alias.name for alias in node.names] if node.module is None else [node.module]
            relative.update(("." * (node.level - 1)) + name for name in names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "modeling_asda":
            absolute.add(node.module)
        elif isinstance(node, ast.Import):
            absolute.update(a.name for a in node.names if a.name.split(".")[0] == "modeling_asda")
    return relative, absolute


def relative_import_closure(entry_points) -> set[str]:
    seen, todo = set(), list(entry_points)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        relative, absolute = imports_of(module)
        assert not absolute, (
            f"{module}.py imports {sorted(absolute)} absolutely; Hub files import each other relatively"
        )
        for name in relative:
            assert "." not in name and (PACKAGE / f"{name}.py").is_file(), (
                f"{module}.py imports .{name}, which is not a top-level module: a checkpoint would not carry it"
            )
            todo.append(name)
    return seen


def test_relative_import_closure_of_the_hub_files_is_the_top_level_set():
    assert relative_import_closure(ENTRY_POINTS) == top_level_modules()


def test_the_closure_check_notices_a_leak(tmp_path, monkeypatch):
    """The check above would fail if a Hub file imported a sub-package or an extra top-level helper."""
    fake = tmp_path / "modeling_asda"
    fake.mkdir()
    (fake / "modeling_asda.py").write_text("from .configuration_asda import X\nfrom .training.trainer import T\n")
    (fake / "configuration_asda.py").write_text("X = 1\n")
    (fake / "helper.py").write_text("Y = 2\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    try:
        relative_import_closure(["modeling_asda"])
    except AssertionError as error:
        assert "training.trainer" in str(error)
    else:
        raise AssertionError("an import of a sub-package was not reported")
    (fake / "modeling_asda.py").write_text("from .configuration_asda import X\n")
    assert relative_import_closure(["modeling_asda"]) != top_level_modules()  # helper.py is not carried


def test_a_saved_checkpoint_carries_exactly_the_top_level_files(tmp_path):
    config = ASDAConfig.tiny(num_local_attention_layers=1)
    ASDAForReferringSegmentation(config).save_pretrained(tmp_path)
    ASDAProcessor.from_model_config(config).save_pretrained(tmp_path)
    carried = {path.stem for path in tmp_path.glob("*.py")}
    assert carried == top_level_modules()


def package_import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (at module level or inside functions), by dotted name."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                edges.update(t for t in [target] + [f"{target}.{a.name}" for a in node.names] if t in modules)
            elif isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in modules)
        # The package's lazy __init__ is reached by every submodule import; it is no dependency of theirs.
        graph[name] = edges - {name, "modeling_asda"}
    return graph


def test_no_import_cycles_in_the_package():
    graph = package_import_graph()
    assert graph["modeling_asda.training.experiment"] >= {"modeling_asda.evaluation.model_card"}  # edges are seen
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as error:
        raise AssertionError(f"import cycle: {' -> '.join(error.args[1])}") from None
