"""Every example in README.md and docs/*.md runs, every relative link resolves, and the README stays short.

The conventions (documented at the top of docs/README.md):

- Each Markdown file is one scenario: its blocks run in document order, in one temporary directory (the
  current directory of the Python blocks and of the shell commands) and against one fresh database with the
  built-in schema, its built-in migrations recorded (as ``dbp initdb`` leaves it). ``DBP_DSN`` names that
  database, so ``SQLConnection().connect()`` and ``dbp`` find it.
- A ```python block runs in one namespace per file, where ``db`` (a connected ``SQLConnection``) and ``dsn``
  (the database's DSN) are predefined.
- A block whose first line is ``# <name>.py``, or whose info string has ``file=<name>`` (```` ```csv
  file=objects.csv ````), is a file: it is written into the directory, not run. The directory is on
  ``sys.path``, as for a Python started there, so the examples can import such a module.
- A ```sh block whose command lines all start with ``dbp `` runs line by line in bash, with the virtualenv's
  ``dbp`` first on ``PATH``; each command must exit 0 unless its comment says ``# exit N`` (or ``exit: N``).
  Blocks with other commands (``make``, pipes into ``psql``) and ``dbp embedded`` commands (they manage the
  one local server the tests themselves use) are shown, not run.
- Output samples and anything else not meant to run use ```text (or another language).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"

# A fence at the start of a line, its info string, its body, and the closing fence.
_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
_FILE_HEADER = re.compile(r"#\s*([\w.-]+\.py)")
_EXIT = re.compile(r"\bexit:?\s*(\d+)")
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the block's first body line
    lang: str
    attrs: dict[str, str]
    body: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def file_name(self) -> str | None:
        """The name of the file this block is, or None for an example to run."""
        if "file" in self.attrs:
            return self.attrs["file"]
        first = self.body.splitlines()[0].strip() if self.body.strip() else ""
        m = _FILE_HEADER.fullmatch(first)
        return m.group(1) if m and self.lang == "python" else None


def doc_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def blocks(path: Path) -> list[Block]:
    text = path.read_text()
    found = []
    for m in _FENCE.finditer(text):
        info = m.group(1).split()
        lang = info[0] if info else ""
        attrs = dict(part.split("=", 1) for part in info[1:] if "=" in part)
        found.append(Block(path, text.count("\n", 0, m.start(2)) + 1, lang, attrs, m.group(2)))
    return found


def shell_commands(block: Block) -> list[tuple[int, str, int]] | None:
    """``(line, command, expected exit code)`` of a runnable ```sh block, or None when it is shown only."""
    commands = []
    pending = ""
    for offset, raw in enumerate(block.body.splitlines()):
        line = pending + raw.strip()
        if line.endswith("\\"):  # a continued command
            pending = line[:-1].rstrip() + " "
            continue
        pending = ""
        if not line or line.startswith("#"):
            continue
        if not line.startswith("dbp ") or line.startswith("dbp embedded"):
            return None
        words = shlex.shlex(line, posix=True)
        words.whitespace_split = True
        words.commenters = ""
        comment = line[line.index("#") :] if "#" in line else ""
        try:
            list(words)
        except ValueError as exc:
            raise AssertionError(f"{block.where}: cannot parse {line!r}: {exc}") from None
        m = _EXIT.search(comment)
        commands.append((block.line + offset, line, int(m.group(1)) if m else 0))
    return commands or None


def _close_connections(namespace: dict[str, Any], keep: Any) -> None:
    for value in list(namespace.values()):
        if value is not keep and type(value).__name__ == "SQLConnection":
            value.close()


def _run_shell(block: Block, cwd: Path, env: dict[str, str]) -> None:
    commands = shell_commands(block)
    assert commands is not None
    for line, command, expected in commands:
        result = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert result.returncode == expected, (
            f"{block.path.relative_to(ROOT)}:{line}: `{command}` exited {result.returncode}, "
            f"expected {expected}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
        assert "Traceback" not in result.stderr, f"{block.path.relative_to(ROOT)}:{line}\n{result.stderr}"


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


@pytest.mark.parametrize("path", doc_files(), ids=_ids(doc_files()))
def test_examples_run(path: Path, db: Any, dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each file's blocks, in order, against one fresh database with the built-in schema."""
    found = blocks(path)
    runnable = [
        b
        for b in found
        if (b.lang == "python" and b.file_name is None) or (b.lang == "sh" and shell_commands(b) is not None)
    ]
    if not runnable:
        pytest.skip(f"{path.relative_to(ROOT)} has no runnable examples")
    monkeypatch.setenv("DBP_DSN", dsn)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # as for a python started in that directory
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # A real module, so dataclasses and typing.get_type_hints resolve the examples' annotations.
    module = types.ModuleType("docs_example_" + re.sub(r"\W", "_", path.stem))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    namespace.update(db=db, dsn=dsn)
    # The database as a reader's is after `make run` or `dbp initdb`: the built-in schema, its migrations
    # recorded.
    _run_shell(Block(path, 0, "sh", {}, "dbp initdb\n"), tmp_path, env)
    try:
        for block in found:
            name = block.file_name
            if name is not None:
                (tmp_path / name).write_text(block.body)
            elif block.lang == "python":
                code = compile("\n" * (block.line - 1) + block.body, str(path), "exec")
                exec(code, namespace)  # noqa: S102 - our own documentation; running it is the point
            elif block in runnable:
                _run_shell(block, tmp_path, env)
    finally:
        _close_connections(namespace, keep=db)
        for name, mod in list(sys.modules.items()):  # the example's own modules (written files) go with it
            if str(getattr(mod, "__file__", None) or "").startswith(str(tmp_path)):
                del sys.modules[name]


def test_migrations_example_runs_against_the_embedded_server(tmp_path: Path) -> None:
    """docs/migrations.md's example with nothing configured, as a newcomer runs it: no ``DBP_DSN``, no
    ``DB_CONFIG``; ``dbp`` starts a server of its own under ``./.dbp`` and every command does what the page
    says."""
    project = tmp_path / "project"
    project.mkdir()
    found = blocks(DOCS / "migrations.md")
    for block in found:
        if block.file_name:
            (project / block.file_name).write_text(block.body)
    (commands,) = [c for c in (shell_commands(b) for b in found if b.lang == "sh") if c]
    env = {k: v for k, v in os.environ.items() if k not in ("DBP_DSN", "DATABASE_URL", "DBP_EMBEDDED_DIR")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"

    def run(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", command], cwd=project, env=env, capture_output=True, text=True, timeout=300
        )

    try:
        for line, command, expected in commands:
            result = run(command)
            if "DB_CONFIG must be" in result.stderr:
                pytest.skip("this checkout still refuses a settings.py without DB_CONFIG (issue 11, item 6)")
            assert result.returncode == expected, (
                f"docs/migrations.md:{line}: `{command}` exited {result.returncode}\n"
                f"{result.stdout}{result.stderr}"
            )
        assert (project / ".dbp").is_dir()  # the embedded server of that directory, not the tests' one
        assert "[X]" in result.stdout and "add-watchlist" in result.stdout
    finally:
        if (project / ".dbp").exists():
            run("dbp embedded stop")


def test_every_python_fence_is_found() -> None:
    """A ```python fence the collector misses (indented, unclosed) would be an example nobody runs."""
    for path in doc_files():
        text = path.read_text()
        opened = len(re.findall(r"^[ \t>]*```python", text, re.MULTILINE))
        collected = sum(1 for b in blocks(path) if b.lang == "python")
        assert opened == collected, (
            f"{path.relative_to(ROOT)}: {opened} ```python fences, {collected} collected"
        )


def test_docs_have_runnable_examples() -> None:
    """The collector finds the guides' examples (a broken pattern would make every test above pass
    vacuously)."""
    runnable_python = {
        p.name for p in doc_files() for b in blocks(p) if b.lang == "python" and b.file_name is None
    }
    assert {"README.md", "models.md", "queries.md", "writing-data.md", "types.md"} <= runnable_python
    migrations = blocks(DOCS / "migrations.md")
    assert {b.file_name for b in migrations} >= {"settings.py", "watchlist_models.py"}
    assert any(b.lang == "sh" and shell_commands(b) for b in migrations)


def test_shell_convention() -> None:
    block = Block(
        README,
        10,
        "sh",
        {},
        "# a comment\ndbp initdb\ndbp make_migrations --check   # exit 1: drift\n"
        "dbp migrate rollback \\\n  --count 1  # exit: 2\n",
    )
    assert shell_commands(block) == [
        (11, "dbp initdb", 0),
        (12, "dbp make_migrations --check   # exit 1: drift", 1),
        (14, "dbp migrate rollback --count 1  # exit: 2", 2),
    ]
    assert shell_commands(Block(README, 1, "sh", {}, 'dbp initdb\npsql "$(dbp embedded start)"\n')) is None
    assert shell_commands(Block(README, 1, "sh", {}, "dbp embedded stop\n")) is None
    assert shell_commands(Block(README, 1, "sh", {}, "make run\n")) is None
    header = Block(README, 1, "python", {}, "# settings.py\nMODELS = []\n")
    assert header.file_name == "settings.py"
    assert Block(README, 1, "csv", {"file": "objects.csv"}, "oid\n").file_name == "objects.csv"
    assert Block(README, 1, "python", {}, "# just a comment\nx = 1\n").file_name is None


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """The relative links of ``path`` that point to nothing inside ``root`` (anchors are not checked)."""
    broken = []
    for target in _LINK.findall(_without_code(path.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # an absolute URL, mailto:, or an anchor in the same page
        resolved = (path.parent / target.split("#", 1)[0]).resolve()
        if not resolved.exists() or not resolved.is_relative_to(root):
            broken.append(target)
    return broken


@pytest.mark.parametrize("path", doc_files(), ids=_ids(doc_files()))
def test_relative_links_resolve(path: Path) -> None:
    """Every relative link points to a file or directory of the repository."""
    broken = broken_links(path)
    assert not broken, f"{path.relative_to(ROOT)}: broken relative links {broken}"


@pytest.mark.parametrize("path", doc_files(), ids=_ids(doc_files()))
def test_no_path_outside_the_repository(path: Path) -> None:
    """A reader has only the repository: no ``../shared``, no design notes that do not ship with it."""
    text = path.read_text()
    for needle in ("../shared", "shared/data", "DESIGN.md", "/work/"):
        assert needle not in text, f"{path.relative_to(ROOT)} names {needle!r}, which a clone does not have"


_CITED_TEST = re.compile(r"(tests/[\w/]+\.py)::(\w+)")


def test_cited_tests_exist() -> None:
    """A guarantee is only as good as its test: each ``tests/<file>.py::<test>`` the docs cite is defined
    there."""
    cited = [(p, *m) for p in doc_files() for m in _CITED_TEST.findall(p.read_text())]
    assert len(cited) >= 40, "docs/guarantees.md cites the test of each guarantee"
    missing = []
    for doc, file, name in cited:
        test_file = ROOT / file
        if not test_file.is_file() or not re.search(rf"^def {name}\(", test_file.read_text(), re.MULTILINE):
            missing.append(f"{doc.relative_to(ROOT)}: {file}::{name}")
    assert not missing, "cited tests that do not exist:\n" + "\n".join(missing)


def test_readme_is_a_short_front_page() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) < 200, f"README.md has {len(lines)} lines; the guides belong in docs/"
    assert (DOCS / "README.md").is_file()
    assert "docs/README.md" in README.read_text()


def test_link_checker_catches_a_broken_link(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "other.md").write_text("")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "[ok](page.md) [up](../other.md#top) [gone](missing.md#x) [web](https://example.org) [a](#b)\n"
        "[outside](../../x.md) `[code](no.md)`\n```text\n[code](no.md)\n```\n"
    )
    (tmp_path.parent / "x.md").touch()
    assert broken_links(page, root=tmp_path) == ["missing.md#x", "../../x.md"]


def _without_code(text: str) -> str:
    """``text`` without fenced blocks and inline code, where brackets are code, not links."""
    text = _FENCE.sub("", text)
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    return re.sub(r"`[^`\n]*`", "", text)
