"""No value reaches a shell: the project's source starts every process from an argv list.

Walks ubertruck_ops/ with `ast` and fails on `shell=True`, on a process call whose command is a
string (literal, f-string or concatenation), and on os.system / os.popen / os.exec*p* with a shell.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ubertruck_ops

SOURCE = Path(ubertruck_ops.__file__).parent
# name -> index of the command among the positional arguments (execute.spawn and Stage take a label first)
PROCESS_CALLS = {"run": 0, "Popen": 0, "call": 0, "check_call": 0, "check_output": 0, "create_subprocess_exec": 0,
                 "spawn": 1, "Stage": 1}
SHELL_FUNCTIONS = {("os", "system"), ("os", "popen"), ("subprocess", "getoutput"), ("subprocess", "getstatusoutput"),
                   ("asyncio", "create_subprocess_shell"), ("os", "spawnlp"), ("os", "spawnvp")}


def _name(func: ast.expr) -> tuple[str | None, str | None]:
    """Return (module or object name, attribute) of a call's function: ('subprocess', 'run'), (None, 'run')."""
    if isinstance(func, ast.Attribute):
        owner = func.value.id if isinstance(func.value, ast.Name) else None
        return owner, func.attr
    if isinstance(func, ast.Name):
        return None, func.id
    return None, None


def _is_string(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return True
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
        return _is_string(node.left) or _is_string(node.right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("format", "join") \
            and _is_string(node.func.value):
        return True
    return False


def shell_uses(source: str, filename: str = "<source>") -> list[str]:
    """Given Python source, return 'line: what' for every way it hands a string to a shell."""
    problems = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        owner, attr = _name(node.func)
        for keyword in node.keywords:
            if keyword.arg == "shell" and not (isinstance(keyword.value, ast.Constant) and keyword.value.value is False):
                problems.append(f"{node.lineno}: shell={ast.unparse(keyword.value)}")
        if (owner, attr) in SHELL_FUNCTIONS:
            problems.append(f"{node.lineno}: {owner}.{attr}()")
        elif attr in PROCESS_CALLS and owner in (None, "subprocess", "asyncio", "execute"):
            index = PROCESS_CALLS[attr]
            command = node.args[index] if len(node.args) > index else \
                next((k.value for k in node.keywords if k.arg in ("argv", "args")), None)
            if command is not None and _is_string(command):
                problems.append(f"{node.lineno}: {attr}() with a string command {ast.unparse(command)[:60]}")
    return problems


def test_the_checker_catches_every_way_to_reach_a_shell():
    bad = '''
import os, subprocess
subprocess.run("pg_ctl start", shell=True)
subprocess.Popen(f"cp {path} /tmp")
subprocess.check_output("ls " + folder)
os.system("rm -rf /")
os.popen("id")
run("pg_ctl -D " + data)
subprocess.run(["ls"], shell=flag)
spawn("server", "prefect server start")
Stage("gpg", argv="gpg --passphrase " + secret)
'''
    found = shell_uses(bad)
    assert [line.split(":")[0] for line in found] == ["3", "3", "4", "5", "6", "7", "8", "9", "10", "11"], found
    assert shell_uses('subprocess.run(["pg_ctl", "-D", data], shell=False)\nrun([tool, "--version"])\n'
                      'spawn("Prefect server", [python, "-m", "prefect"])\n') == []


@pytest.mark.parametrize("path", sorted(SOURCE.rglob("*.py")), ids=lambda p: str(p.relative_to(SOURCE)))
def test_no_module_of_the_project_hands_a_string_to_a_shell(path):
    assert shell_uses(path.read_text(), str(path)) == []
