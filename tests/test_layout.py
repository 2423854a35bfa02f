"""The layout docs/architecture.md describes, checked on the code: one package per kind behind the registry, no
kind named outside tfft/tasks/, imports at module top with no circle, and validation without TensorFlow.

The layers themselves (which folder may import which) are import-linter's contract in .importlinter, which
`make test` runs before the suite."""

import ast
import pathlib
import subprocess
import sys
import typing

import pytest

from tfft.tasks import api, registry

REPO = pathlib.Path(__file__).resolve().parents[1]
TFFT = REPO / "tfft"


def _modules():
  """Dotted module name -> path, for every module of tfft."""
  out = {}
  for path in TFFT.rglob("*.py"):
    parts = path.relative_to(REPO).with_suffix("").parts
    out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
  return out


MODULES = _modules()


def _resolve(name: str) -> str:
  while name and name not in MODULES:
    name = name.rpartition(".")[0]
  return name


def _imports(path: pathlib.Path):
  """(imported tfft module, line, inside a function, source line) for every import statement of the file."""
  source = path.read_text()
  lines = source.splitlines()
  tree = ast.parse(source)
  parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    else:
      continue
    scope, in_function = node, False
    while scope in parents and not in_function:
      scope = parents[scope]
      in_function = isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef))
    for target in {_resolve(name) for name in names if name.startswith("tfft")} - {"", "tfft"}:
      yield target, node.lineno, in_function, lines[node.lineno - 1]


def test_no_import_circle_between_tfft_modules_counting_function_level_imports():
  edges = {name: {target for target, *_ in _imports(path)} - {name} for name, path in MODULES.items()}
  index, low, stack, on_stack, circles = {}, {}, [], set(), []

  def visit(v):  # Tarjan's strongly connected components
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in edges.get(v, ()):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        circles.append(sorted(component))

  sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
  for name in sorted(MODULES):
    if name not in index:
      visit(name)
  assert circles == []


def test_imports_between_tfft_modules_sit_at_module_top_unless_deferring_tensorflow():
  inside = [f"{path.relative_to(REPO)}:{line}: {text.strip()}" for path in MODULES.values()
            for _, line, in_function, text in _imports(path) if in_function and "deferred" not in text]
  assert inside == []


def test_kind_packages_import_only_their_own_modules_their_shared_base_and_the_layers_below():
  """What import-linter's layers leave to this test: a kind imports no other kind, and nothing above tfft.tasks."""
  above = ("tfft.fit", "tfft.flags", "tfft.tasks.registry") + tuple(
      f"tfft.{c}" for c in ("train", "evaluate", "predict", "export", "curve", "lr_find", "search"))
  wrong = []
  for name, path in MODULES.items():
    parts = name.split(".")
    if len(parts) < 3 or parts[1] != "tasks" or parts[2] not in registry.KINDS:
      continue
    for target, line, _, _ in _imports(path):
      t = target.split(".")
      other_kind = len(t) > 2 and t[1] == "tasks" and t[2] in registry.KINDS and t[2] != parts[2]
      if other_kind or target in above or target.startswith(tuple(a + "." for a in above)):
        wrong.append(f"{path.relative_to(REPO)}:{line}: imports {target}")
  assert wrong == []


def test_no_kind_of_task_is_named_outside_tfft_tasks():
  kinds = set(registry.KINDS)
  named = []
  for name, path in MODULES.items():
    if name.startswith("tfft.tasks"):
      continue
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Constant) and node.value in kinds:
        named.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}")
  # The one exception: --task's default, which the flags need before any kind is loaded.
  assert named == [f"tfft/config.py:{_task_default_line()}: {registry.DEFAULT_KIND!r}"]


def _task_default_line() -> int:
  for node in ast.walk(ast.parse((TFFT / "config.py").read_text())):
    if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "task":
      return node.value.args[0].lineno
  raise AssertionError("tfft/config.py declares no task option")


def test_every_kind_is_one_package_with_one_registry_line():
  packages = sorted(p.name for p in (TFFT / "tasks").iterdir() if (p / "__init__.py").is_file())
  shared = ["pooled"]  # the pooled-head kinds' base, not a kind
  assert sorted(registry.KINDS) == sorted(set(packages) - set(shared))
  for name, spec in registry.KINDS.items():
    assert spec.name == name
    assert spec.module == f"tfft.tasks.{name}.task"
    assert (TFFT / "tasks" / name / "spec.py").is_file()


@pytest.mark.parametrize("name", sorted(registry.KINDS))
def test_each_kind_implements_every_member_of_the_target_protocol(name):
  module = registry.spec(name).load()
  for function in ("build", "load_served_examples"):
    assert callable(getattr(module, function))
  target = module.TARGET
  members = set(typing.get_type_hints(api.Target)) | {
      m for m in vars(api.Target) if not m.startswith("_") and callable(vars(api.Target)[m])}
  missing = sorted(m for m in members if not hasattr(target, m))
  assert missing == []
  assert target.name == name
  assert tuple(target.monitors) == registry.spec(name).monitors


def test_validation_flags_and_run_dir_reading_import_no_tensorflow():
  code = ("import sys\n"
          "import tfft.flags, tfft.train, tfft.evaluate, tfft.predict, tfft.export\n"
          "from tfft import config, rundir\n"
          "from tfft.tasks import registry\n"
          "for name, spec in registry.KINDS.items():\n"
          "  c = config.Config(data=config.DataConfig(dataset=spec.datasets[0], task=name),\n"
          "                    model=config.ModelConfig(backbone='smollm2-135m' if name == 'generate' else 'minilm-l6'))\n"
          "  registry.validate(registry.with_defaults(c, lambda flag: False))\n"
          "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'keras_hub')))\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip() == "[]"
