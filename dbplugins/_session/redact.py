"""Keeping secrets out of what we print: passwords found in DSNs and in settings.py,
tracebacks without source.

The CLI collects every secret a command may know of (its ``--dsn``, ``DBP_DSN`` / ``DATABASE_URL``, the
resolved password, and the password-like literals of ``settings.py``, read *before* it runs, so a settings
file that raises cannot leak its own password) and masks them in every message;
tracebacks never show source lines.
"""

from __future__ import annotations

import ast
import io
import os
import re
import tokenize
import traceback
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

__all__ = ["secrets_in_dsn", "secrets_in_settings_file", "format_traceback"]


_SECRET_WORDS = re.compile(r"pass|pwd|secret|token", re.I)
_URL_PASSWORD = re.compile(r"://[^:/@\s]*:([^@\s]+)@")
_KV_PASSWORD = re.compile(r"\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", re.I)


def secrets_in_dsn(text: str | None) -> set[str]:
    """Passwords written in ``text``: a URL's ``user:password@`` or a key/value DSN's ``password=...``."""
    if not text:
        return set()
    found = {unquote(m.group(1)) for m in _URL_PASSWORD.finditer(text)}
    found |= {m.group(1) for m in _URL_PASSWORD.finditer(text)}
    for m in _KV_PASSWORD.finditer(text):
        value = m.group(1)
        found.add(value)
        if value.startswith("'") and value.endswith("'") and len(value) > 1:
            found.add(value[1:-1].replace("\\'", "'").replace("\\\\", "\\"))
    return {f for f in found if f}


def _literal(text: str) -> str | None:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    return value if isinstance(value, str) else None


def _string_literals(source: str) -> Iterator[tuple[str, str | None]]:
    """Each string literal of Python ``source`` with the key it is the value of, if any.

    The key is the name or string just before ``=`` or ``:`` (``PASSWORD = "x"``, ``"PASSWORD": "x"``,
    ``password="x"``). Source that does not tokenize (a syntax error) is read with a regular expression.
    """
    significant: list[str] = []  # the last two significant tokens before this one
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type in (
                tokenize.NL,
                tokenize.NEWLINE,
                tokenize.COMMENT,
                tokenize.INDENT,
                tokenize.DEDENT,
            ):
                continue
            if tok.type == tokenize.STRING:
                value = _literal(tok.string)
                if value is not None:
                    key = significant[0] if len(significant) == 2 and significant[1] in ("=", ":") else None
                    yield value, _literal(key) if key and key[:1] in "'\"" else key
            significant = [*significant[-1:], tok.string]
        return
    except (tokenize.TokenError, SyntaxError):
        pass
    pair = re.compile(r"""(\w+|"[^"]*"|'[^']*')\s*[:=]\s*(?:"([^"]*)"|'([^']*)')""")
    for m in pair.finditer(source):
        yield m.group(2) if m.group(2) is not None else m.group(3), m.group(1).strip("'\"")
    for m in re.finditer(r"\"([^\"\n]*)\"|'([^'\n]*)'", source):
        yield m.group(1) if m.group(1) is not None else m.group(2), None


def secrets_in_settings_file(settings_path: str | None) -> set[str]:
    """The string literals of settings.py that look like secrets, read without running it.

    A literal counts when it is the value of a key or name that mentions a password, secret or token
    (``"PASSWORD": "..."``, ``DB_PASSWORD = "..."``), or when it is a DSN or URL carrying a password. Best
    effort, to mask them in what a failing settings.py makes us print.
    """
    base = Path(os.path.expanduser(settings_path)) if settings_path else Path.cwd()
    path = base if base.is_file() else base / "settings.py"
    try:
        source = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    found: set[str] = set()
    for value, key in _string_literals(source):
        found |= secrets_in_dsn(value)
        if key and _SECRET_WORDS.search(key) and value:
            found.add(value)
    return found


def format_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` and its causes as file, line and function only.

    Source lines are left out on purpose: the failing line may hold a password (``settings.py`` raising on the
    line that sets ``PASSWORD``), and masking can only remove the secrets we know of.
    """
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    out: list[str] = []
    for i, e in enumerate(reversed(chain)):
        if i:
            direct = chain[len(chain) - i - 1].__cause__ is not None
            out.append(
                "\nThe above exception was the direct cause of the following exception:\n"
                if direct
                else "\nDuring handling of the above exception, another exception occurred:\n"
            )
        out.append("Traceback (most recent call last):")  # the usual header; scripts grep for it
        for frame, lineno in traceback.walk_tb(e.__traceback__):
            code = frame.f_code
            out.append(f'  File "{code.co_filename}", line {lineno}, in {code.co_name}')
        out.append(f"{type(e).__module__}.{type(e).__qualname__}: {e}")
    return "\n".join(out)
