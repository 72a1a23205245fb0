"""README.md's code runs as written.

Each ```python block runs in a fresh interpreter in an empty temp dir. Each block of
``$ pyfit ...`` lines (```text, ```bash, ```console) runs its commands in order in a
temp dir holding a copy of ``examples/``; the command must exit 0, or fail with the
shown error line when the README shows one, and every line of the shown output must
be in the real output with its numbers masked (timings differ run to run). Blocks
that set up a machine (virtual environments, pip installs, CMake builds) are skipped
with the reason: they are tested by the build tests or need a network.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import List, Optional, Tuple

import pytest

from pyfit.cli import main

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    tomllib = pytest.importorskip("tomli")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
ENV = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), "MPLBACKEND": "Agg",
       "PYTHONWARNINGS": "ignore"}
# why a block of shell commands is not run, by a word it contains
SET_UP = {"pip install": "installs packages (needs a network); the build tests install pyfit",
          "cmake": "builds the C++ library; tests/test_build_cmake.py runs that build"}
NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


@dataclass
class Block:
    language: str
    line: int  # 1-based line of the opening fence
    code: str

    @property
    def id(self) -> str:
        return f"{self.language or 'plain'}-line-{self.line}"


def readme_blocks() -> List[Block]:
    blocks, current, start, language = [], None, 0, ""
    with open(README, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            fence = re.match(r"^\s*```(\S*)\s*$", line)
            if fence and current is None:
                current, start, language = [], number, fence.group(1).lower()
            elif fence:
                blocks.append(Block(language, start, "".join(current)))
                current = None
            elif current is not None:
                current.append(line)
    return blocks


BLOCKS = readme_blocks()
PYTHON = [block for block in BLOCKS if block.language in ("python", "py")]
SHELL = [block for block in BLOCKS if block.language in ("bash", "sh", "shell", "console", "text")]
TOML = [block for block in BLOCKS if block.language == "toml"]


def commands(block: Block) -> List[Tuple[str, List[str]]]:
    """(command, shown output lines) for a block of ``$ command`` lines with their output; a block
    with no ``$`` is a script of commands without shown output."""
    lines = block.code.splitlines()
    if not any(line.startswith("$ ") for line in lines):
        return [(line, []) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    found: List[Tuple[str, List[str]]] = []
    for line in lines:
        if line.startswith("$ "):
            found.append((line[2:], []))
        elif found:
            found[-1][1].append(line)
    return found


def skeleton(line: str) -> str:
    """A line with its numbers masked and its spacing collapsed."""
    return " ".join(NUMBER.sub("#", line).split())


def run_command(command: str, cwd: str) -> Tuple[int, str]:
    """A ``pyfit`` command line: in this process when it is one plain command, else through bash."""
    if not re.search(r"[|<>;&$`]", command):
        argv = shlex.split(command)
        out, err = io.StringIO(), io.StringIO()
        previous = os.getcwd()
        os.chdir(cwd)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                status = main(argv[1:])
        finally:
            os.chdir(previous)
        return status, out.getvalue() + err.getvalue()
    script = f'pyfit() {{ {shlex.quote(sys.executable)} -m pyfit "$@"; }}\n{command}\n'
    done = subprocess.run(["bash", "-c", script], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout + done.stderr


def _why_skipped(block: Block) -> Optional[str]:
    for word, why in SET_UP.items():
        if word in block.code:
            return why
    listed = commands(block)
    if not listed:
        return "no commands"
    others = [command for command, _ in listed if not command.startswith("pyfit ")]
    if others:
        return f"not a pyfit command: {others[0]!r}"
    return None


def test_the_readme_has_code_to_check():
    assert len(PYTHON) >= 2 and any(_why_skipped(block) is None for block in SHELL)


@pytest.mark.parametrize("block", PYTHON, ids=[block.id for block in PYTHON])
def test_python_block_runs(block, tmp_path):
    (tmp_path / "snippet.py").write_text(block.code)
    done = subprocess.run([sys.executable, "snippet.py"], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, f"README.md line {block.line}:\n{done.stderr[-3000:]}"


@pytest.mark.parametrize("block", SHELL, ids=[block.id for block in SHELL])
def test_shell_block_runs_and_shows_its_real_output(block, tmp_path):
    why = _why_skipped(block)
    if why:
        pytest.skip(why)
    shutil.copytree(os.path.join(ROOT, "examples", "data"), tmp_path / "examples" / "data")
    for command, shown in commands(block):
        status, output = run_command(command, str(tmp_path))
        where = f"README.md line {block.line}: $ {command}"
        error = next((line for line in shown if " error: " in line), None)
        if error is None:
            assert status == 0, f"{where}\nexited {status}:\n{output[-3000:]}"
        else:
            assert status != 0 and error in output.splitlines(), f"{where}\nexpected {error!r}, got:\n{output}"
        real = {skeleton(line) for line in output.splitlines()}
        missing = [line for line in shown if line.strip() and skeleton(line) not in real]
        assert not missing, f"{where}\nshown but not printed: {missing}\nprinted:\n{output[-3000:]}"


@pytest.mark.parametrize("block", TOML, ids=[block.id for block in TOML])
def test_toml_block_parses(block):
    assert tomllib.loads(block.code)
