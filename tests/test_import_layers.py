"""Imports point one way (issue 17 point 3): each selfsup module has a layer, and no module imports a module
of a higher layer. The layers, bottom to top:

0. the contract and the config types: the names packages share (trainer.contract), the `selfsup` logger,
   the installed versions, the training settings (trainer.hparams) and the console progress;
1. the Trainer module (the rest of trainer/) and the custom components (components/): neither imports the
   other's internals, and a component imports no other component's modules but the shared artifact types and files
   (components.artifacts, components.model_comparison);
2. the pipeline's configuration and factory (pipeline.config, pipeline.pipeline, ...);
3. what runs a pipeline or reads its results: the runners (local, Kubeflow) and the post-run modules;
4. the command lines (pipeline.cli, the Kubeflow CLI).
bench/ may import any layer; no selfsup module imports bench/.
"""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# kubeflow/ is installed as the package selfsup_kubeflow (setup.py's package_dir).
FOLDERS = {"trainer": "trainer", "components": "components", "pipeline": "pipeline", "kubeflow": "selfsup_kubeflow",
           "bench": "bench"}
BOTTOM = ("trainer.contract", "trainer.log", "trainer.versions", "trainer.hparams", "trainer.progress")
RUNNERS_AND_RESULTS = ("pipeline.local_runner", "pipeline.results", "pipeline.embed", "selfsup_kubeflow.runner")
COMMAND_LINES = ("pipeline.cli", "selfsup_kubeflow.cli")
SHARED_COMPONENT_MODULES = ("components", "components.artifacts", "components.model_comparison")
BENCH = 99


def _within(module, prefixes):
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def layer(module: str) -> int:
    if _within(module, BOTTOM):
        return 0
    if _within(module, ("trainer", "components")):
        return 1
    if _within(module, COMMAND_LINES):
        return 4
    if _within(module, RUNNERS_AND_RESULTS):
        return 3
    if _within(module, ("pipeline", "selfsup_kubeflow")):
        return 2
    if _within(module, ("bench",)):
        return BENCH
    raise AssertionError(f"{module}: no layer; give it one in tests/test_import_layers.py")


def modules():
    """{module name: path} of every selfsup source module."""
    found = {}
    for folder, package in FOLDERS.items():
        for directory, _, files in os.walk(os.path.join(ROOT, folder)):
            for name in files:
                if name.endswith(".py"):
                    relative = os.path.relpath(os.path.join(directory, name), os.path.join(ROOT, folder))
                    parts = [package] + relative[:-3].split(os.sep)
                    if parts[-1] == "__init__":
                        parts.pop()
                    found[".".join(parts)] = os.path.join(directory, name)
    return found


def imports(path: str, known):
    """The selfsup modules `path` imports (absolute imports; `from a import b` counts as a.b when a.b is a module)."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module
                     for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in FOLDERS.values():
                yield node.lineno, name


def _component(module):
    parts = module.split(".")
    return parts[1] if parts[0] == "components" and len(parts) > 1 else None


def violations():
    known = modules()
    found = []
    for module, path in sorted(known.items()):
        for line, imported in imports(path, known):
            where = f"{os.path.relpath(path, ROOT)}:{line}: {module} (layer {layer(module)}) imports {imported}"
            if layer(imported) > layer(module):
                found.append(f"{where} (layer {layer(imported)})")
            elif _within(module, ("trainer",)) and _within(imported, ("components",)):
                found.append(f"{where}: the Trainer module imports no component")
            elif (_within(module, ("components",)) and _within(imported, ("trainer",))
                  and not _within(imported, BOTTOM)):
                found.append(f"{where}: a component imports only the bottom layer of trainer/")
            elif (_component(module) and _component(imported) and _component(imported) != _component(module)
                  and imported not in SHARED_COMPONENT_MODULES):
                found.append(f"{where}: a component imports no other component's modules")
    return sorted(set(found))


def test_every_module_has_a_layer():
    for module in modules():
        layer(module)


def test_imports_point_down_the_layers():
    found = violations()
    assert not found, "imports that run back:\n" + "\n".join(found)


def test_the_bottom_layer_imports_nothing_above_it_and_no_tensorflow():
    known = modules()
    for module in BOTTOM:
        if module == "trainer.progress":  # the training phases' Keras callbacks live there
            continue
        with open(known[module], encoding="utf-8") as handle:
            source = handle.read()
        assert "import tensorflow" not in source and "import keras" not in source, module
