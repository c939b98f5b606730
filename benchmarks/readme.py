"""Render the README's benchmark block from the result JSONs (``--check``: compare instead of writing).

The block between ``<!-- BENCHMARKS:START -->`` and ``<!-- BENCHMARKS:END -->`` in ``README.md`` is the rendering of
``benchmarks/readme_template.md``, whose numbers are placeholders resolved from ``benchmarks/results/``:

- ``{{ [forcefield_rmd17_30min.json#/results/compscope/forces_mae_meV_A] | .1f }}``: a value by file and
  `JSON pointer <https://www.rfc-editor.org/rfc/rfc6901>`_ (``~1`` stands for ``/`` inside a key, ``~0`` for
  ``~``), formatted with a Python format spec;
- ``{{@ ff30 = forcefield_rmd17_30min.json }}`` on a line of its own names a file (the line is not rendered), so
  ``[ff30#/results/compscope/epochs]`` reads it;
- arithmetic, comparisons and ``min max sum len mean count count_lt abs round`` over references and numbers
  (``count_lt(xs, ys)``: how many ``x < y`` pairwise):
  ``{{ [ff30#/results/mace/forces_mae_meV_A] / [ff30#/results/compscope/forces_mae_meV_A] | .1f }}``;
- a pointer segment with ``*`` or ``?`` matches keys (or list indices) as a glob and yields the list of matches:
  ``{{ max([pde#/summary/E*/neural_error]) | .0f }}``;
- formats beyond Python's: ``met`` (``met`` / ``not met``), ``yes`` (``yes`` / ``no``), ``k`` (thousands, ``117k``);
  a null value (a quantity a failed run could not measure) renders ``n/a`` whatever the format.

A missing file, key or alias, or an expression that does not evaluate, raises :class:`TemplateError` naming the
placeholder. Usage::

    python -m benchmarks.readme           # rewrite the README block
    python -m benchmarks.readme --check   # exit 1 with a diff when the README and the JSONs disagree
"""

from __future__ import annotations

import argparse
import ast
import difflib
import fnmatch
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any

if not __package__:  # run as `python benchmarks/readme.py`: put the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import RESULTS, ROOT  # noqa: E402

__all__ = ["TemplateError", "check", "main", "render", "render_template", "resolve", "splice"]

TEMPLATE = ROOT / "benchmarks" / "readme_template.md"
README = ROOT / "README.md"
START, END = "<!-- BENCHMARKS:START -->", "<!-- BENCHMARKS:END -->"

_PLACEHOLDER = re.compile(r"\{\{(?!@)(.*?)\}\}", re.S)
_ALIAS = re.compile(r"^\{\{@\s*(\w+)\s*=\s*(\S+?)\s*\}\}[ \t]*\n?", re.M)
_REF = re.compile(r"\[([^\[\]#]+)#([^\[\]]*)\]")
_FUNCS = {
    "min": min, "max": max, "sum": sum, "len": len, "abs": abs, "round": round, "mean": statistics.fmean,
    "count": lambda xs: sum(1 for x in xs if x),
    "count_lt": lambda xs, ys: sum(1 for x, y in zip(xs, ys, strict=True) if x < y),
}
_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp, ast.Call, ast.Name, ast.Load,
          ast.Constant, ast.List, ast.Tuple, ast.operator, ast.unaryop, ast.cmpop, ast.boolop)


class TemplateError(ValueError):
    """A placeholder of the README template cannot be resolved (missing file, key, alias or bad expression)."""


def _unescape(segment: str) -> str:
    return segment.replace("~1", "/").replace("~0", "~")


def resolve(doc: Any, pointer: str) -> Any:
    """The value at JSON ``pointer`` in ``doc``; glob segments (``*``, ``?``) give the list of every match.

    Raises:
        KeyError: naming the segment that is missing (or that no key matches).
    """
    if pointer in ("", "/"):
        return doc
    if not pointer.startswith("/"):
        raise KeyError(f"a JSON pointer starts with '/': {pointer!r}")
    values, many = [doc], False
    for raw in pointer[1:].split("/"):
        seg = _unescape(raw)
        nxt = []
        for v in values:
            keys = [str(i) for i in range(len(v))] if isinstance(v, list) else list(v) if isinstance(v, dict) else []
            if any(c in seg for c in "*?"):
                many = True
                nxt += [v[int(k)] if isinstance(v, list) else v[k] for k in keys if fnmatch.fnmatchcase(k, seg)]
            elif seg in keys:
                nxt.append(v[int(seg)] if isinstance(v, list) else v[seg])
            elif not many:
                raise KeyError(f"no key {seg!r} (there: {', '.join(keys[:12]) or type(v).__name__})")
        if not nxt:
            raise KeyError(f"no key matches {seg!r}")
        values = nxt
    return values if many else values[0]


def _format(value: Any, spec: str) -> str:
    if value is None:  # JSON null: a quantity the run could not measure (a failed run); a target is not met by it
        return "not met" if spec == "met" else "n/a"
    if spec == "met":
        return "met" if value else "not met"
    if spec == "yes":
        return "yes" if value else "no"
    if spec.startswith("k"):  # thousands: "117k"
        return format(value / 1000, spec[1:] or ".0f") + "k"
    return format(value, spec) if spec else str(value)


class _Renderer:
    def __init__(self, results: Path):
        self.results = results
        self.docs: dict[Path, Any] = {}
        self.aliases: dict[str, str] = {}

    def load(self, name: str) -> Any:
        path = self.results / self.aliases.get(name, name)
        if name not in self.aliases and not name.endswith(".json"):
            raise FileNotFoundError(f"{name!r} is neither an alias ({', '.join(self.aliases) or 'none'}) nor a .json")
        if path not in self.docs:
            if not path.exists():
                raise FileNotFoundError(f"no file {path}")
            self.docs[path] = json.loads(path.read_text())
        return self.docs[path]

    def value(self, text: str) -> str:
        expr, _, spec = text.partition("|")
        refs: dict[str, Any] = {}

        def sub(m: re.Match) -> str:
            name = f"_ref{len(refs)}"
            refs[name] = resolve(self.load(m.group(1).strip()), m.group(2).strip())
            return name

        code = _REF.sub(sub, expr.strip())
        tree = ast.parse(code, mode="eval")
        for node in ast.walk(tree):
            if not isinstance(node, _NODES) or (isinstance(node, ast.Name) and node.id not in {*refs, *_FUNCS}):
                what = node.id if isinstance(node, ast.Name) else type(node).__name__
                raise ValueError(f"not allowed in a placeholder: {what}")
        value = eval(compile(tree, "<placeholder>", "eval"), {"__builtins__": {}}, {**_FUNCS, **refs})  # noqa: S307
        return _format(value, spec.strip())


def render_template(text: str, results: Path = RESULTS) -> str:
    """Render a template: alias lines removed, every ``{{ ... }}`` replaced by its value.

    Raises:
        TemplateError: naming the first placeholder that cannot be resolved and why.
    """
    r = _Renderer(results)
    for name, file in _ALIAS.findall(text):
        r.aliases[name] = file
    text = _ALIAS.sub("", text)

    def sub(m: re.Match) -> str:
        try:
            return r.value(m.group(1))
        except (KeyError, FileNotFoundError, ValueError, TypeError, ZeroDivisionError, SyntaxError) as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else e
            raise TemplateError(f"placeholder {m.group(0)!r}: {msg}") from e

    return _PLACEHOLDER.sub(sub, text)


def render(template: Path = TEMPLATE, results: Path = RESULTS) -> str:
    """The rendered README block (markers excluded) from ``template`` and the JSONs in ``results``."""
    return render_template(template.read_text(), results)


def splice(readme: str, block: str) -> str:
    """``readme`` with the text between the BENCHMARKS markers replaced by ``block``."""
    try:
        head, rest = readme.split(START, 1)
        _, tail = rest.split(END, 1)
    except ValueError:
        raise TemplateError(f"README has no {START} ... {END} block") from None
    return f"{head}{START}\n{block.strip()}\n{END}{tail}"


def check(readme: Path = README, template: Path = TEMPLATE, results: Path = RESULTS) -> str:
    """A unified diff from the README to its rendering ('' when they agree)."""
    old = readme.read_text()
    new = splice(old, render(template, results))
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), "README.md", "rendered"))


def main(argv: list[str] | None = None) -> int:
    """Command line: write the README block, or with ``--check`` report whether it agrees with the JSONs."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 with a diff when README.md differs from the JSONs")
    args = ap.parse_args(argv)
    try:
        if args.check:
            diff = check()
            if diff:
                print("README.md's benchmark block differs from benchmarks/results (`python -m benchmarks.readme`):")
                print(diff)
                return 1
            print("README.md agrees with benchmarks/results")
            return 0
        README.write_text(splice(README.read_text(), render()))
    except TemplateError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote the benchmark block of {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
