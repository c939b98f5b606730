"""REST API on a real uvicorn server (loopback), driven with httpx: results, limits and 4xx errors."""

from __future__ import annotations

import concurrent.futures as cf

import pytest

from ._data import library_records, queries
from ._server import running_server


@pytest.fixture(scope="module")
def url(index):
    from compscope.search import create_app

    app = create_app(index, max_results=200, max_time_limit=2.0, max_body_bytes=4096, max_batch=5)
    with running_server(app) as u:
        yield u


@pytest.fixture(scope="module")
def client(url):
    import httpx

    with httpx.Client(base_url=url, timeout=120) as c:
        yield c


def alive(client):
    r = client.get("/api/info")
    assert r.status_code == 200 and r.json()["n"] == 3000


def test_info_docs_and_openapi(client):
    alive(client)
    assert client.get("/api/info").json()["fingerprint"] == {"kind": "morgan", "radius": 2, "nbits": 2048,
                                                            "counts": False}
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/topk", "/api/similarity", "/api/substructure", "/api/exact", "/api/batch"} <= set(paths)


def test_queries_match_python_api(client, index):
    q = queries()[0]
    r = client.post("/api/topk", json={"query": q, "k": 7}).json()
    assert [h["id"] for h in r["hits"]] == index.top_k(q, 7).ids
    assert r["hits"][0]["score"] == pytest.approx(float(index.top_k(q, 1).scores[0]), abs=1e-6)
    full = index.similarity(q, 0.25)
    p1 = client.post("/api/similarity", json={"query": q, "threshold": 0.25, "limit": 3}).json()
    p2 = client.post("/api/similarity", json={"query": q, "threshold": 0.25, "offset": 3, "limit": 3}).json()
    assert [h["id"] for h in p1["hits"] + p2["hits"]] == full.ids[:6] and p1["n_total"] == len(full)
    f = client.post("/api/similarity", json={"query": q, "threshold": 0.25, "filters": {"mw": [None, 300]}}).json()
    assert all(h["mw"] <= 300 for h in f["hits"])
    s = client.post("/api/substructure", json={"query": "c1ccncc1", "limit": 5}).json()
    assert [h["id"] for h in s["hits"]] == index.substructure("c1ccncc1", limit=5).ids and s["next_offset"] == 5
    c = client.post("/api/substructure", json={"query": "c1ccncc1", "count": True}).json()
    assert c["count"] == index.substructure("c1ccncc1", count=True).count
    smi, mid = library_records()[9]
    assert client.post("/api/exact", json={"query": smi}).json()["hits"][0]["id"] == mid
    b = client.post("/api/batch", json={"queries": queries()[:3], "k": 4}).json()
    assert [[h["id"] for h in x["hits"]] for x in b["results"]] == [index.top_k(x, 4).ids for x in queries()[:3]]
    svg = client.get("/api/depict", params={"smiles": "c1ccccc1O"})
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg") and "<svg" in svg.text


@pytest.mark.parametrize("path,body,status,msg", [
    ("/api/topk", {"query": "C1CC"}, 400, "invalid SMILES"),
    ("/api/topk", {"query": ""}, 400, "empty"),
    ("/api/topk", {"query": "CCO", "k": 10**9}, 400, "cap of 200"),
    ("/api/topk", {"query": "CCO", "k": 0}, 422, "greater than or equal"),
    ("/api/topk", {"query": "CCO", "fingerprint": {"kind": "morgan", "radius": 3}}, 400, "rebuild the index"),
    ("/api/similarity", {"query": "CCO", "threshold": 2}, 422, "less than or equal"),
    ("/api/similarity", {"query": "CCO", "limit": 10**9}, 400, "cap of 200"),
    ("/api/similarity", {"query": "CCO", "filters": {"foo": [1, 2]}}, 400, "unknown property"),
    ("/api/substructure", {"query": "C1CC("}, 400, "invalid"),
    ("/api/substructure", {"query": "[C;X9$("}, 400, "invalid"),
    ("/api/substructure", {"query": "c1ccccc1", "limit": 10**9}, 400, "cap of 200"),
    ("/api/substructure", {"query": "c1ccccc1", "time_limit": 600}, 400, "cap of 2.0"),
    ("/api/exact", {"query": "xyz"}, 400, "invalid SMILES"),
    ("/api/batch", {"queries": ["CCO"] * 6}, 400, "batch cap of 5"),
    ("/api/batch", {"queries": ["CCO", "C1CC"]}, 400, "invalid SMILES"),
    ("/api/topk", {"k": 3}, 422, "query"),
])
def test_bad_requests_get_4xx_and_server_keeps_serving(client, path, body, status, msg):
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    assert msg in r.text
    alive(client)


def test_size_limit_and_pathological_smarts(client):
    r = client.post("/api/topk", content=b'{"query": "' + b"C" * 6000 + b'"}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 413 and "exceeds the limit" in r.json()["detail"]
    alive(client)
    slow = "[$(*~*~*~*~*~*~*~*),$(*1~*~*~*~*~*1)]~[!#1]~[!#1]~[!#1]~[!#1]~[!#1]"
    r = client.post("/api/substructure", json={"query": slow, "count": True, "time_limit": 0.01})
    assert r.status_code == 200 and r.json()["partial"] is True
    alive(client)


def test_concurrent_clients(url, index):
    import httpx

    qs = queries()

    def one(i):
        with httpx.Client(base_url=url, timeout=60) as c:
            return c.post("/api/topk", json={"query": qs[i % len(qs)], "k": 5}).json()

    with cf.ThreadPoolExecutor(10) as ex:
        res = list(ex.map(one, range(20)))
    assert [[h["id"] for h in r["hits"]] for r in res] == [index.top_k(qs[i % len(qs)], 5).ids for i in range(20)]
