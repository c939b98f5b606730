"""`compscope search ...` through typer's CliRunner (same code path as the console script)."""

from __future__ import annotations

import json
import sys

from typer.testing import CliRunner

from compscope.cli import app

from ._data import LIBRARY, library_records, queries

runner = CliRunner()


def test_search_verbs(index_path, tmp_path, index):
    out = tmp_path / "cli.csi"
    src = tmp_path / "m.smi"
    recs = library_records()[:120]
    src.write_text("".join(f"{s} {i}\n" for s, i in recs) + "C1CC broken\n")
    r = runner.invoke(app, ["search", "build", str(src), "--out", str(out), "--jobs", "1", "--fp", "morgan"])
    assert r.exit_code == 0, r.output
    assert "1 invalid SMILES" in r.output and "line 121" in r.output
    r = runner.invoke(app, ["search", "append", str(out), str(LIBRARY), "--jobs", "1"])
    assert r.exit_code == 0 and "3120 molecules" in r.output
    r = runner.invoke(app, ["search", "info", str(out)])
    assert json.loads(r.output)["n"] == 3120
    q = queries()[0]
    r = runner.invoke(app, ["search", "similar", str(index_path), q, "-k", "4", "--json"])
    assert r.exit_code == 0 and [h["id"] for h in json.loads(r.output)["hits"]] == index.top_k(q, 4).ids
    r = runner.invoke(app, ["search", "similar", str(index_path), q, "-t", "0.3", "-f", "mw=..300", "--json"])
    assert [h["id"] for h in json.loads(r.output)["hits"]] == index.similarity(q, 0.3, filters="mw=..300").ids
    qf = tmp_path / "q.smi"
    qf.write_text("\n".join(queries()[:3]))
    r = runner.invoke(app, ["search", "similar", str(index_path), "--queries", str(qf), "-k", "2"])
    assert r.exit_code == 0 and r.output.count("query:") == 3
    r = runner.invoke(app, ["search", "substructure", str(index_path), "c1ccncc1", "--count", "--json"])
    assert json.loads(r.output)["count"] == index.substructure("c1ccncc1", count=True).count
    r = runner.invoke(app, ["search", "substructure", str(index_path), "c1ccncc1", "--limit", "5"])
    assert r.exit_code == 0 and "more hits: --offset 5" in r.output
    r = runner.invoke(app, ["search", "exact", str(index_path), recs[3][0], "--json"])
    assert json.loads(r.output)["hits"][0]["id"] == recs[3][1]
    r = runner.invoke(app, ["search", "shard", str(index_path), "--out-dir", str(tmp_path / "sh"), "--n", "3"])
    assert r.exit_code == 0 and r.output.count("shard_") == 3


def test_cli_errors_say_how_to_fix(index_path, tmp_path):
    bad = tmp_path / "x.xyz"
    bad.write_text("3\n\nO 0 0 0\nH 0 0 1\nH 0 1 0\n" * 5)
    cases = [
        (["search", "build", str(bad), "--out", str(tmp_path / "o.csi"), "--jobs", "1"], "--smiles-col"),
        (["search", "similar", str(tmp_path / "nope.csi"), "CCO"], "compscope search build"),
        (["search", "similar", str(index_path), "C1CC"], "invalid SMILES"),
        (["search", "similar", str(index_path), "CCO", "-k", "1000000000"], "out of range"),
        (["search", "substructure", str(index_path), "C1CC("], "invalid"),
        (["search", "build", str(bad), "--out", str(tmp_path / "p.csi"), "--fp", "ecfp9"], "unknown fingerprint"),
    ]
    for args, msg in cases:
        r = runner.invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        assert msg in r.output, (args, r.output)


def test_help_is_fast_and_light():
    import subprocess

    heavy = ("rdkit", "torch", "ray", "numba", "fastapi")
    code = f"import sys, compscope.search; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"importing compscope.search loaded {out}"
    r = runner.invoke(app, ["search", "--help"])
    assert r.exit_code == 0 and "serve" in r.output and "substructure" in r.output
