"""The public plugin API: what `mergekit_evo` promises, what the shipped plugins use, and name collisions."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import mergekit_evo
from mergekit_evo.plugin.errors import UserError
from mergekit_evo.plugin.manager import Registry

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_PACKAGES = sorted(p for p in (ROOT / "plugins").glob("*/mergekit_evo_*") if p.is_dir() and "egg" not in p.name)


def test_every_public_name_imports_from_the_package_and_the_api_has_a_version():
    assert mergekit_evo.API_VERSION == 2
    for name in mergekit_evo.__all__:
        assert getattr(mergekit_evo, name) is not None, name
    for kind in ("Optimizer", "Estimator", "TaskBackend", "Merger", "ResponseSource", "Executor"):
        assert inspect.isabstract(getattr(mergekit_evo, kind)) or kind == "Estimator", kind
    with pytest.raises(AttributeError):
        mergekit_evo.RunStore  # noqa: B018  (internal: not part of the API)


def test_what_type_checkers_see_is_what_the_lazy_loader_serves():
    """The public names are written in _PUBLIC (the loader's map) and, for type checkers, under TYPE_CHECKING: the
    two must name the same objects from the same modules."""
    tree = ast.parse(Path(mergekit_evo.__file__).read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    typed = {a.name: n.module for n in block.body if isinstance(n, ast.ImportFrom) for a in n.names}
    assert typed == mergekit_evo._PUBLIC
    assert sorted(mergekit_evo.__all__) == sorted([*typed, "API_VERSION", "__version__"])


@pytest.mark.parametrize(
    "kind, required",
    [
        ("Optimizer", ["dim", "n_objectives", "seed", "population", "options", "x0"]),
        ("Estimator", ["options", "seed"]),
        ("TaskBackend", ["config"]),
        ("Merger", ["config"]),
        ("Executor", ["options"]),
        ("Observer", ["options", "run_dir", "config"]),
    ],
)
def test_the_base_classes_take_keyword_only_constructor_arguments(kind, required):
    parameters = inspect.signature(getattr(mergekit_evo, kind).__init__).parameters
    for name in required:
        assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY, (kind, name)


def _core_imports(package: Path) -> list[str]:
    """Every `mergekit_evo...` module a plugin package imports, at any depth of its code."""
    found = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "mergekit_evo":
                found.append(f"{path.name}: from {node.module}")
            elif isinstance(node, ast.Import):
                found += [f"{path.name}: import {a.name}" for a in node.names if a.name.split(".")[0] == "mergekit_evo"]
    return found


def test_the_shipped_plugins_import_only_the_public_api():
    assert len(PLUGIN_PACKAGES) == 8
    for package in PLUGIN_PACKAGES:
        imports = _core_imports(package)
        assert imports, package.name
        assert all(line.endswith("from mergekit_evo") for line in imports), imports


def test_the_shipped_plugins_tests_use_only_the_public_api_and_mergekit_evo_testing():
    import mergekit_evo.testing

    for tests in sorted((ROOT / "plugins").glob("*/tests")):
        imports = _core_imports(tests)
        assert imports, tests
        outside = [line for line in imports if not line.endswith(("from mergekit_evo", "from mergekit_evo.testing"))]
        assert not outside, outside
    for name in mergekit_evo.testing._SUPPORT:  # every name the support module promises is there
        assert getattr(mergekit_evo.testing, name) is not None, name


class _Mine:
    """a third party's optimizer"""


class _Theirs:
    """another one"""


def test_a_name_two_distributions_register_is_refused_naming_both_until_the_config_chooses():
    reg = Registry()
    reg.add("optimizers", "random", _Mine, "mergekit-evo (built-in)")
    reg.add("optimizers", "random", _Theirs, "mergekit-evo-fancy")
    reg.add("optimizers", "cma", _Mine, "mergekit-evo-cma")
    reg.add("optimizers", "cma", _Mine, "mergekit-evo-cma")  # the same distribution twice is no conflict
    assert reg.get("optimizers", "cma", "optimizer.name") is _Mine
    with pytest.raises(UserError) as refused:
        reg.get("optimizers", "random", "optimizer.name")
    message = str(refused.value)
    assert "mergekit-evo (built-in) and mergekit-evo-fancy" in message and "providers:" in message
    assert reg.get("optimizers", "random", "optimizer.name", {"random": "mergekit-evo-fancy"}) is _Theirs
    assert reg.get("optimizers", "random", "optimizer.name", {"random": "mergekit-evo (built-in)"}) is _Mine
    with pytest.raises(UserError, match=r"providers.random: 'nobody' does not provide it"):
        reg.get("optimizers", "random", "optimizer.name", {"random": "nobody"})
    assert reg.names("optimizers") == ["cma", "random"]


def test_a_colliding_plugin_is_shown_as_a_conflict_and_a_run_using_it_is_refused(micro_world, tmp_path):

    from helpers import write_config
    from mergekit_evo.config import load_config
    from mergekit_evo.plugin.hookspecs import hookimpl
    from mergekit_evo.plugin.manager import get_plugin_manager, registry
    from mergekit_evo.run.evolution import Evolution
    from mergekit_evo.run.optimizers import RandomSearch

    class Fancy:
        @hookimpl
        def register_optimizers(self, register):
            register("random", RandomSearch)

    pm = get_plugin_manager()
    plugin = Fancy()
    pm.register(plugin, name="fancy")
    pm.distributions["fancy"] = "mergekit-evo-fancy"
    try:
        reg = registry(pm)
        assert set(reg.conflicts["optimizers"]["random"]) == {"mergekit-evo (built-in)", "mergekit-evo-fancy"}
        config = load_config(write_config(micro_world, tmp_path, max_evaluations=2, population=2))
        with pytest.raises(UserError, match="registered by mergekit-evo \\(built-in\\) and mergekit-evo-fancy"):
            Evolution.start(config, tmp_path / "run", log=lambda _: None)
        assert not (tmp_path / "run").exists()
        chosen = config.model_copy(update={"providers": {"random": "mergekit-evo-fancy"}})
        result = Evolution.start(chosen, tmp_path / "run", log=lambda _: None).run(progress=False)
        assert len(result.records) == 2
    finally:
        pm.unregister(plugin)
        del pm.distributions["fancy"]
