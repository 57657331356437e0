"""The import contracts ([tool.importlinter] in pyproject.toml) hold, and catch a forbidden import;
no import circle inside src/bincount (docs/development.md says who may import whom)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(*args: str, cwd: Path = ROOT, src: Path | None = None):
    env = dict(os.environ)
    if src is not None:  # this copy of the package comes before the editable install
        env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_contracts_are_kept():
    result = lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_every_contract_is_named_and_checked():
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
        "contracts"
    ]
    assert {c["id"] for c in contracts} >= {
        "data-models-independent",
        "serving-side-no-trainer",
        "launch-side-no-torch",
    }
    out = lint_imports().stdout
    for contract in contracts:
        # lint-imports wraps long names over lines: compare without the line breaks
        assert contract["name"].replace(" ", "") in out.replace("\n", "").replace(" ", "")


@pytest.mark.parametrize(
    "module, added, contract",
    [
        (
            "sagemaker/launch/spec.py",
            "import pytorch_lightning",
            "the SageMaker launch side never imports torch, Lightning",
        ),
        ("data/transforms.py", "import bincount.models.heads", "data and models are independent"),
        (
            "serving/server.py",
            "import bincount.training.runner",
            "inference, serving and export never",
        ),
    ],
)
def test_a_forbidden_import_breaks_its_contract(tmp_path, module, added, contract):
    src = tmp_path / "src"
    shutil.copytree(
        ROOT / "src" / "bincount", src / "bincount", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = src / "bincount" / module
    target.write_text(target.read_text() + f"\n{added}  # added by tests/test_contracts.py\n")

    result = lint_imports("--config", str(tmp_path / "pyproject.toml"), cwd=tmp_path, src=src)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    broken = out.split("Broken contracts", 1)[-1]
    assert contract in broken, out
    # the report points at the line that was added
    assert f"bincount.{module[:-3].replace('/', '.')} -> {added.split()[-1]}" in out


def import_cycles() -> list[set[str]]:
    """The strongly connected components (more than one module) of src/bincount's import graph:
    every import counts, those inside functions too."""
    graph = grimp.build_graph("bincount", cache_dir=None)
    modules = sorted(graph.modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.add(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(component)

    for module in modules:
        if module not in index:
            visit(module)
    return found


def test_no_import_cycle_in_src():
    """No circle anywhere in src/bincount, imports inside functions included (the
    acyclic_siblings contract checks siblings only)."""
    cycles = [sorted(cycle) for cycle in import_cycles()]
    assert not cycles, f"import circles in src/bincount: {cycles}"
