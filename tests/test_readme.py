"""The commands the README shows (```sh blocks, lines starting with `bridge` or `python
scripts/`) run as shown, in order, with out/ redirected to a temporary folder."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith(("bridge ", "python scripts/")):
                commands.append(line)
    return commands


def test_readme_lists_the_two_commands_first():
    text = (ROOT / "README.md").read_text()
    first_block = re.search(r"```sh\n(.*?)```", text, flags=re.S).group(1)
    assert [l.split()[:2] for l in first_block.splitlines() if l.strip()] == [["make", "convert"], ["make", "test"]]


def test_readme_commands_run(tmp_path):
    commands = readme_commands()
    assert any(c.startswith("bridge convert") for c in commands)
    assert any(c.startswith("bridge validate") for c in commands)
    assert any(c.startswith("python scripts/") for c in commands)
    for command in commands:
        argv = [a.replace("out/", f"{tmp_path}/out/") for a in shlex.split(command)]
        if argv[0] == "bridge":
            argv = [sys.executable, "-m", "bridge", *argv[1:]]
        else:
            argv = [sys.executable, *argv[1:]]
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"
