"""Bad input through REST and CLI, tried as a new user would: clear 4xx / non-zero exit codes with a message.

Invalid SMARTS, NaN / infinite / out-of-range thresholds, k of 0 or -1, a 100 kB query string, a query that
matches everything (paged, not materialised), an empty database; and the CLI's start-up cost.
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from compscope.cli import app

from ._server import running_server

runner = CliRunner()
BIG = "C" * 100_000  # a 100 kB query string


@pytest.fixture(scope="module")
def empty_index(tmp_path_factory):
    """A database with no molecules (the third shard of a two-molecule index)."""
    from compscope.search import build_index, split_index

    d = tmp_path_factory.mktemp("empty")
    (d / "two.smi").write_text("CCO a\nc1ccccc1 b\n")
    build_index(d / "two.smi", d / "two.csi", n_jobs=1)
    return split_index(d / "two.csi", d / "shards", 3)[2]


@pytest.fixture(scope="module")
def servers(index, empty_index):
    import httpx

    from compscope.search import SearchIndex, create_app

    with running_server(create_app(index, max_results=200, max_time_limit=5.0)) as u1, \
            running_server(create_app(index, max_body_bytes=300_000)) as u2, \
            running_server(create_app(SearchIndex.open(empty_index))) as u3, \
            httpx.Client(base_url=u1, timeout=120) as c1, httpx.Client(base_url=u2, timeout=120) as c2, \
            httpx.Client(base_url=u3, timeout=120) as c3:
        yield c1, c2, c3


def _raw(client, path, text: str):
    return client.post(path, content=text.encode(), headers={"content-type": "application/json"})


@pytest.mark.parametrize("path,body,status,msg", [
    ("/api/similarity", '{"query": "CCO", "threshold": NaN}', 422, "finite number"),
    ("/api/similarity", '{"query": "CCO", "threshold": Infinity}', 422, "finite number"),
    ("/api/similarity", '{"query": "CCO", "threshold": -0.5}', 422, "greater than 0"),
    ("/api/similarity", '{"query": "CCO", "threshold": 1.5}', 422, "less than or equal to 1"),
    ("/api/similarity", '{"query": "CCO", "a": NaN, "metric": "tversky"}', 422, "finite number"),
    ("/api/topk", '{"query": "CCO", "threshold": NaN}', 422, "finite number"),
    ("/api/topk", '{"query": "CCO", "k": 0}', 422, "greater than or equal to 1"),
    ("/api/topk", '{"query": "CCO", "k": -1}', 422, "greater than or equal to 1"),
    ("/api/topk", '{"query": "CCO", "k": 201}', 400, "cap of 200"),
    ("/api/batch", '{"queries": ["CCO"], "mode": "similarity", "threshold": NaN}', 422, "finite number"),
    ("/api/substructure", '{"query": "c1ccccc1", "time_limit": NaN}', 422, "finite number"),
    ("/api/substructure", '{"query": "[C;X9$("}', 400, "invalid"),
    ("/api/substructure", '{"query": "C1CC(", "syntax": "smarts"}', 400, "invalid SMARTS"),
    ("/api/substructure", '{"query": "c1ccccc1", "limit": 0}', 422, "greater than or equal to 1"),
])
def test_rest_bad_values_get_4xx_with_a_message(servers, path, body, status, msg):
    c = servers[0]
    r = _raw(c, path, body)
    assert r.status_code == status, r.text
    assert msg in r.text
    if status == 422:
        assert r.json()["message"]  # one line a person can read, next to pydantic's details
    assert c.get("/api/info").status_code == 200


def test_rest_100kb_query(servers):
    small_cap, big_cap, _ = servers
    r = small_cap.post("/api/substructure", json={"query": BIG})
    assert r.status_code == 413 and "exceeds the limit" in r.json()["detail"]
    r = big_cap.post("/api/substructure", json={"query": BIG})  # under the body cap: the field limit answers
    assert r.status_code == 422 and "at most 2000 characters" in r.json()["message"]
    assert big_cap.get("/api/info").status_code == 200


def test_rest_match_everything_is_paged(servers, index):
    c = servers[0]
    p1 = c.post("/api/substructure", json={"query": "*", "limit": 50}).json()
    p2 = c.post("/api/substructure", json={"query": "*", "limit": 50, "offset": 50}).json()
    assert p1["n_hits"] == p2["n_hits"] == 50 and p1["next_offset"] == 50 and not p1["partial"]
    assert not {h["id"] for h in p1["hits"]} & {h["id"] for h in p2["hits"]}
    n = c.post("/api/substructure", json={"query": "*", "count": True}).json()
    assert n["count"] == len(index) and n["hits"] == []
    s = c.post("/api/similarity", json={"query": "CCO", "threshold": 1e-6, "limit": 10, "offset": 20}).json()
    full = index.similarity("CCO", 1e-6).ids  # every molecule sharing a bit with the query
    assert s["n_total"] == len(full) > 2000 and s["n_hits"] == 10 and s["next_offset"] == 30
    assert [h["id"] for h in s["hits"]] == full[20:30]


def test_rest_empty_database(servers):
    c = servers[2]
    assert c.get("/api/info").json()["n"] == 0
    for path, body in (("/api/topk", {"query": "CCO"}), ("/api/similarity", {"query": "CCO", "threshold": 0.1}),
                       ("/api/substructure", {"query": "*"}), ("/api/exact", {"query": "CCO"})):
        r = c.post(path, json=body)
        assert r.status_code == 200 and r.json()["hits"] == [], (path, r.text)
    assert c.post("/api/substructure", json={"query": "*", "count": True}).json()["count"] == 0
    assert c.post("/api/topk", json={"query": "C1CC"}).status_code == 400  # still validated


@pytest.mark.parametrize("args,msg", [
    (["similar", "{idx}", "CCO", "-k", "0"], "greater than or equal to"),
    (["similar", "{idx}", "CCO", "-k", "-1"], "greater than or equal to"),
    (["similar", "{idx}", "CCO", "-t", "nan"], "threshold must be in (0, 1]"),
    (["similar", "{idx}", "CCO", "-t", "1.5"], "threshold must be in (0, 1]"),
    (["similar", "{idx}", "CCO", "-t", "0"], "threshold must be in (0, 1]"),
    (["substructure", "{idx}", "[C;X9$("], "invalid"),
    (["substructure", "{idx}", "C1CC(", "--syntax", "smarts"], "invalid SMARTS"),
    (["substructure", "{idx}", BIG], "too long (max 2000)"),
    (["similar", "{idx}", BIG], "too long (max 2000)"),
    (["substructure", "{idx}", "c1ccccc1", "--time-limit", "nan"], "time_limit must be in (0, 600]"),
    (["substructure", "{idx}", "c1ccccc1", "--limit", "0"], "limit=0 is out of range"),
    (["substructure", "{idx}", "c1ccccc1", "--jobs", "0"], "greater than or equal to"),
])
def test_cli_bad_values_exit_nonzero_with_a_message(index_path, args, msg):
    r = runner.invoke(app, ["search", *[a.format(idx=index_path) if a == "{idx}" else a for a in args]])
    assert r.exit_code != 0, r.output
    assert msg in r.output, r.output


def test_cli_match_everything_and_empty_database(index_path, empty_index, tmp_path):
    import json

    r = runner.invoke(app, ["search", "substructure", str(index_path), "*", "--limit", "7", "--json"])
    d = json.loads(r.output)
    assert r.exit_code == 0 and d["n_hits"] == 7 and d["next_offset"] == 7
    r = runner.invoke(app, ["search", "similar", str(empty_index), "CCO", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["hits"] == []
    (tmp_path / "empty.smi").write_text("")
    r = runner.invoke(app, ["search", "build", str(tmp_path / "empty.smi"), "--out", str(tmp_path / "e.csi")])
    assert r.exit_code != 0 and "no valid SMILES" in r.output


def test_cli_help_starts_fast():
    """`compscope --help` in a fresh process: well under a CPU second (heavy modules load lazily)."""
    exe = shutil.which("compscope") or str(Path(sys.executable).with_name("compscope"))
    code = ("import sys, compscope.cli; print([m for m in ('rdkit', 'torch', 'numba', 'ray', 'fastapi', 'pandas') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"importing the CLI loaded {out}"
    cpu = []
    for _ in range(2):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([exe, "--help"], capture_output=True, check=True)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    assert min(cpu) < 0.6, cpu
