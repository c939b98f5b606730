"""Regenerate the module table of docs/repomap.md from the modules' docstrings (run after adding files)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "compscope"
MAP = ROOT / "docs" / "repomap.md"
START, END = "<!-- MODULES:START -->", "<!-- MODULES:END -->"


def first_line(path: Path) -> str:
    try:
        doc = ast.get_docstring(ast.parse(path.read_text()))
    except SyntaxError:
        return ""
    return (doc or "").strip().splitlines()[0] if doc else ""


def table() -> str:
    rows = ["| path | what |", "|---|---|"]
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(ROOT)
        rows.append(f"| `{rel}` | {first_line(path).replace('|', '/')} |")
    return "\n".join(rows)


def main() -> None:
    text = MAP.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    MAP.write_text(f"{head}{START}\n{table()}\n{END}{tail}")


if __name__ == "__main__":
    main()
