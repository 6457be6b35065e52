"""How the CLI prints: JSON, aligned tables, and text cut to one line."""

from __future__ import annotations

import json
from typing import Any

import click


def echo_json(data: Any) -> None:
    """Print `data` as indented JSON (anything not JSON-native as its `str`)."""
    click.echo(json.dumps(data, indent=2, default=str))


def table(rows: list[list[str]], headers: list[str]) -> str:
    """Rows under headers, columns padded to their widest cell, trailing spaces stripped."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


def one_line(text: str, width: int = 80) -> str:
    """`text` with its whitespace collapsed, cut to `width` characters with `...`."""
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 3] + "..."
