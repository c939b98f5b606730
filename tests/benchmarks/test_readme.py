"""The README's benchmark block is the rendering of benchmarks/readme_template.md from the result JSONs."""

import json
import re

import pytest

from benchmarks import readme
from benchmarks.readme import TemplateError, render_template, resolve


def test_readme_agrees_with_the_result_jsons():
    diff = readme.check()
    assert diff == "", "README.md and benchmarks/results disagree; run `python -m benchmarks.readme`:\n" + diff


def test_every_number_in_the_tables_is_a_placeholder():
    """The template's tables hold no hand-typed measurement: past the first column (the row's label), every
    digit in a table row comes from a placeholder (or a file or tool name such as FPSim2)."""
    rows = [line for line in readme.TEMPLATE.read_text().splitlines() if line.startswith("|")]
    assert len(rows) > 30
    for line in rows:
        bare = re.sub(r"`[^`]*`", "", re.sub(r"\{\{.*?\}\}", "", line))
        bare = re.sub(r"\b[A-Za-z][\w-]*\d\w*", "", bare)  # names such as FPSim2
        cells = [c for c in bare.strip("|").split("|")][1:]
        assert not any(ch.isdigit() for c in cells for ch in c), line


@pytest.fixture
def results(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({
        "x": 2.0, "y": 8.0, "n": 117206, "ok": True, "cells": {"E1/nx100": {"e": 1.5}, "E2/nx50": {"e": 3.0}},
        "flags": [True, False, True], "none": None}))
    return tmp_path


def test_placeholders_values_formats_aliases_and_ratios(results):
    text = "{{@ a = a.json }}\nx={{[a#/x]|.2f}} r={{[a#/y] / [a.json#/x]|.1f}}x n={{[a#/n]|k}} {{[a#/ok]|met}}\n"
    assert render_template(text, results) == "x=2.00 r=4.0x n=117k met\n"
    # a null (what a failed run could not measure) renders n/a in any format, and a target on it is not met
    text = "{{[a.json#/none]|.3f}} {{[a.json#/none]|k}} {{[a.json#/none]|met}}"
    assert render_template(text, results) == "n/a n/a not met"


def test_globs_escapes_and_functions(results):
    text = ("{{min([a.json#/cells/*/e])}}-{{max([a.json#/cells/E*/e])}} {{[a.json#/cells/E1~1nx100/e]}} "
            "{{count([a.json#/flags/*])}} {{count_lt([a.json#/cells/*/e], [a.json#/cells/*/e])}} "
            "{{[a.json#/x] >= 3|yes}}")
    assert render_template(text, results) == "1.5-3.0 1.5 2 0 no"


def test_missing_file_key_or_alias_names_the_placeholder(results):
    with pytest.raises(TemplateError, match=r"missing\.json#/x.*no file"):
        render_template("{{[missing.json#/x]}}", results)
    with pytest.raises(TemplateError, match=r"a\.json#/cells/E3.*no key 'E3'.*E1/nx100"):
        render_template("{{[a.json#/cells/E3]}}", results)
    with pytest.raises(TemplateError, match="neither an alias"):
        render_template("{{[b#/x]}}", results)
    with pytest.raises(TemplateError, match="not allowed"):
        render_template("{{__import__('os')}}", results)


def test_resolve_is_a_json_pointer():
    doc = {"a/b": {"~k": [10, 20]}}
    assert resolve(doc, "/a~1b/~0k/1") == 20
    assert resolve(doc, "/a~1b/~0k/*") == [10, 20]
    with pytest.raises(KeyError):
        resolve(doc, "/a~1b/x")


def test_check_reports_a_stale_number(tmp_path, results):
    template = tmp_path / "t.md"
    template.write_text("x is {{[a.json#/x]}}\n")
    md = tmp_path / "README.md"
    md.write_text(f"intro\n{readme.START}\nx is 2.0\n{readme.END}\nrest\n")
    assert readme.check(md, template, results) == ""
    (results / "a.json").write_text(json.dumps({"x": 2.5}))
    diff = readme.check(md, template, results)
    assert "-x is 2.0" in diff and "+x is 2.5" in diff
    assert readme.splice(md.read_text(), "new").endswith(f"{readme.START}\nnew\n{readme.END}\nrest\n")
