"""The house keeps its shape (docs/layout.md): read every module's imports with `ast` and
fail on an arrow that points up, on a flow that talks to the outside world itself, and on a process
started anywhere but tasks/execute.py.

    deployments -> flows, operations, tasks, blocks, core, sandbox
    flows       -> operations, tasks, blocks, core (never another flow module)
    operations  -> tasks, blocks, core (procedures shared by flows)
    tasks       -> blocks, core
    blocks      -> core
    core        -> core only
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.test_no_shell import SOURCE, _name

PACKAGE = "ubertruck_ops"
FORBIDDEN = {
    "blocks": {"tasks", "flows", "operations", "deployments", "sandbox"},
    "tasks": {"flows", "operations", "deployments"},
    "operations": {"flows", "deployments"},
    "flows": {"deployments"},
}
FLOW_FORBIDDEN_MODULES = {"subprocess", "socket", "psycopg", "httpx"}
# What starts a process: only tasks/execute.py may.
PROCESS_STARTERS = {("subprocess", a) for a in ("run", "Popen", "call", "check_call", "check_output", "getoutput",
                                                "getstatusoutput")} | \
                   {("os", a) for a in ("system", "popen", "fork", "forkpty", "posix_spawn", "posix_spawnp",
                                        "execv", "execve", "execvp", "execvpe", "execl", "execle", "execlp", "execlpe",
                                        "spawnv", "spawnve", "spawnvp", "spawnvpe", "spawnl", "spawnle", "spawnlp",
                                        "spawnlpe")} | \
                   {("asyncio", "create_subprocess_exec"), ("asyncio", "create_subprocess_shell"),
                    ("pty", "spawn"), ("pty", "fork")}
EXECUTE = "tasks/execute.py"
# Looking at or deleting files is a task's work (tasks/load.folder_facts, tasks/leftovers.remove_scratch_folder):
# a flow that does it itself hides I/O in the story and escapes the tasks' tests.
FLOW_FORBIDDEN_CALLS = {("os", "access"), ("shutil", "rmtree")}
FLOW_FORBIDDEN_METHODS = {"iterdir"}


def module_name(path: Path) -> str:
    relative = path.relative_to(SOURCE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """Given a module's source and dotted name, return (line, imported module) for every import,
    relative ones resolved, `from x import y` giving both x and x.y (y may be a submodule)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names if alias.name != "*"]
    return found


def layer_of(dotted: str) -> str | None:
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == PACKAGE else None


def arrows_up(source: str, module: str, is_package: bool = False) -> list[str]:
    """Return 'line: module -> imported' for every import that breaks the layering rules."""
    layer = layer_of(module)
    problems = []
    for line, imported in imports_of(source, module, is_package):
        target = layer_of(imported)
        if target is None or not layer:
            continue
        if layer == "core" and target != "core":
            problems.append(f"{line}: core imports {imported}")
        elif target in FORBIDDEN.get(layer, set()):
            problems.append(f"{line}: {layer} imports {imported}")
        elif layer == "flows" and target == "flows" and not is_package:
            own = module.split(".")[2] if len(module.split(".")) > 2 else ""
            other = imported.split(".")[2] if len(imported.split(".")) > 2 else ""
            if other and other != own:
                problems.append(f"{line}: flow {own} imports flow module {imported}")
    return problems


def outside_world_in_a_flow(source: str) -> list[str]:
    """Return 'line: module' for every import of subprocess, socket, psycopg or httpx."""
    return [f"{line}: {imported}" for line, imported in imports_of(source, f"{PACKAGE}.flows.x")
            if imported.split(".")[0] in FLOW_FORBIDDEN_MODULES]


def files_touched_in_a_flow(source: str) -> list[str]:
    """Return 'line: call' for every os.access(), shutil.rmtree() (also imported by name) and .iterdir()."""
    tree = ast.parse(source)
    imported = {alias.asname or alias.name: (node.module, alias.name) for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module for alias in node.names}
    problems = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        owner, attr = _name(node.func)
        if owner is None and attr in imported:
            owner, attr = imported[attr]
        if (owner, attr) in FLOW_FORBIDDEN_CALLS:
            problems.append(f"{node.lineno}: {owner}.{attr}()")
        elif isinstance(node.func, ast.Attribute) and node.func.attr in FLOW_FORBIDDEN_METHODS:
            problems.append(f"{node.lineno}: .{node.func.attr}()")
    return problems


def processes_started(source: str) -> list[str]:
    """Return 'line: call' for every call that starts a process (subprocess.*, os.exec*/spawn*/fork,
    asyncio.create_subprocess_*), also through `from subprocess import Popen`."""
    tree = ast.parse(source)
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                aliases[alias.asname or alias.name] = (node.module.split(".")[0], alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = (alias.name, None)
    problems = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        owner, attr = _name(node.func)
        if owner is None and attr in aliases and aliases[attr][1]:
            owner, attr = aliases[attr]
        elif owner in aliases and aliases[owner][1] is None:
            owner = aliases[owner][0]
        if (owner, attr) in PROCESS_STARTERS:
            problems.append(f"{node.lineno}: {owner}.{attr}()")
    return problems


def test_the_rules_catch_what_they_are_for():
    assert arrows_up("from ubertruck_ops.tasks import pm2\n", "ubertruck_ops.blocks.app") == \
        ["1: blocks imports ubertruck_ops.tasks", "1: blocks imports ubertruck_ops.tasks.pm2"]
    assert arrows_up("from ..flows.deploy import deploy\n", "ubertruck_ops.tasks.release") == \
        ["1: tasks imports ubertruck_ops.flows.deploy", "1: tasks imports ubertruck_ops.flows.deploy.deploy"]
    assert arrows_up("import ubertruck_ops.log\nfrom ubertruck_ops.core import text\n", "ubertruck_ops.core.x") == \
        ["1: core imports ubertruck_ops.log"]
    assert arrows_up("from ubertruck_ops.flows.nightly_backup import nightly_backup\n",
                     "ubertruck_ops.flows.deploy")[0].startswith("1: flow deploy imports flow module")
    assert arrows_up("from ubertruck_ops.flows.deploy import deploy\n", "ubertruck_ops.operations.go_live") != []
    assert arrows_up("from ubertruck_ops.operations import go_live\nfrom ubertruck_ops.tasks import pm2\n"
                     "from ubertruck_ops.flows.deploy import helper\n", "ubertruck_ops.flows.deploy") == []
    assert arrows_up("from ubertruck_ops.flows.deploy import deploy\n", "ubertruck_ops.deployments.cli") == []
    assert outside_world_in_a_flow("import socket\nfrom psycopg import sql\nimport httpx\nimport json\n") == \
        ["1: socket", "2: psycopg", "2: psycopg.sql", "3: httpx"]
    assert files_touched_in_a_flow("import os, shutil\nfrom shutil import rmtree\nos.access('/x', os.W_OK)\n"
                                   "shutil.rmtree('/x')\nrmtree('/y')\nany(Path('/z').iterdir())\nos.path.exists('/x')\n") \
        == ["3: os.access()", "4: shutil.rmtree()", "5: shutil.rmtree()", "6: .iterdir()"]
    assert processes_started("import subprocess as sp\nfrom subprocess import Popen\nimport os\n"
                             "sp.run(['ls'])\nPopen(['ls'])\nos.execvp('ls', ['ls'])\nrun(['ls'])\n") == \
        ["4: subprocess.run()", "5: subprocess.Popen()", "6: os.execvp()"]


MODULES = sorted(SOURCE.rglob("*.py"))
IDS = [str(p.relative_to(SOURCE)) for p in MODULES]


@pytest.mark.parametrize("path", MODULES, ids=IDS)
def test_every_import_points_down(path):
    assert arrows_up(path.read_text(), module_name(path), path.name == "__init__.py") == []


@pytest.mark.parametrize("path", sorted((SOURCE / "flows").glob("*.py")),
                         ids=lambda p: str(p.relative_to(SOURCE)))
def test_a_flow_runs_no_process_and_opens_no_socket_itself(path):
    assert outside_world_in_a_flow(path.read_text()) == []


@pytest.mark.parametrize("path", sorted((SOURCE / "flows").glob("*.py")),
                         ids=lambda p: str(p.relative_to(SOURCE)))
def test_a_flow_neither_probes_nor_deletes_files_itself(path):
    assert files_touched_in_a_flow(path.read_text()) == []


@pytest.mark.parametrize("path", [p for p in MODULES if p.relative_to(SOURCE).as_posix() != EXECUTE],
                         ids=[i for i in IDS if i != EXECUTE])
def test_only_tasks_execute_starts_processes(path):
    assert processes_started(path.read_text()) == []
