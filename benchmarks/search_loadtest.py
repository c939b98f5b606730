"""Bounded loopback load test of the search REST API: 50 concurrent clients, p50/p99 latency, errors.

Starts ``compscope search serve INDEX`` in a subprocess on 127.0.0.1, then 50 asyncio clients send a
fixed number of mixed requests each (top-10, Tanimoto >= 0.7, substructure first 20 hits, exact match;
queries sampled with seed 0 from MOSES test). A few malformed requests are interleaved to check that
they get 4xx and that the server keeps serving. Writes ``benchmarks/results/search_loadtest.json``.

Usage::

    COMPSCOPE_DATA=/work/shared/data nice -n 10 python benchmarks/search_loadtest.py \
        --index /tmp/compscope_search_bench/lib.csi
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

if not __package__:  # run as `python benchmarks/<name>.py`: put the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import write_result  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sample_queries(n: int) -> list[str]:
    from compscope.data import dataset_path

    with gzip.open(dataset_path("moses", "test.csv.gz"), "rt") as fh:
        test = [ln.strip() for ln in fh][1:]
    rng = np.random.default_rng(0)
    return [test[i] for i in rng.choice(len(test), n, replace=False)]


def requests_for(queries: list[str], n_clients: int, per_client: int, seed: int = 0) -> list[list[tuple]]:
    rng = np.random.default_rng(seed)
    subs = ["c1ccncc1", "[CX3](=O)[NX3]", "c1ccsc1", "S(=O)(=O)N", "C1CCNCC1", "c1ccc2[nH]ccc2c1"]
    plan = []
    for c in range(n_clients):
        reqs = []
        for j in range(per_client):
            q = queries[int(rng.integers(len(queries)))]
            u = rng.random()
            if (c * per_client + j) % 97 == 13:  # malformed on purpose: must be 4xx, not 5xx
                reqs.append(("bad", "/api/topk", {"query": "C1CC(", "k": 10}))
            elif u < 0.55:
                reqs.append(("topk", "/api/topk", {"query": q, "k": 10}))
            elif u < 0.8:
                reqs.append(("threshold", "/api/similarity", {"query": q, "threshold": 0.7, "limit": 100}))
            elif u < 0.9:
                reqs.append(("substructure", "/api/substructure",
                             {"query": subs[int(rng.integers(len(subs)))], "limit": 20, "time_limit": 5}))
            else:
                reqs.append(("exact", "/api/exact", {"query": q}))
        plan.append(reqs)
    return plan


async def run_clients(url: str, plan: list[list[tuple]], timeout: float) -> list[tuple]:
    import httpx

    results: list[tuple] = []

    async def client(reqs):
        async with httpx.AsyncClient(base_url=url, timeout=timeout) as c:
            for kind, path, body in reqs:
                t = time.perf_counter()
                try:
                    r = await c.post(path, json=body)
                    status = r.status_code
                except httpx.HTTPError as exc:
                    status = f"{type(exc).__name__}"
                results.append((kind, status, time.perf_counter() - t))

    await asyncio.gather(*(client(r) for r in plan))
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--index", default="/tmp/compscope_search_bench/lib.csi")
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--per-client", type=int, default=20)
    p.add_argument("--timeout", type=float, default=60.0)
    args = p.parse_args()
    if not Path(args.index).exists():
        sys.exit(f"index {args.index} not found: run benchmarks/search_moses.py first or pass --index")
    port = free_port()
    exe = Path(sys.executable).with_name("compscope")
    cmd = [str(exe), "search", "serve", args.index, "--host", "127.0.0.1", "--port", str(port),
           "--max-time-limit", "10"]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        t0 = time.time()
        while True:
            try:
                if httpx.get(url + "/api/info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.time() - t0 > 120:
                raise SystemExit(f"server did not start: {server.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
        n_index = httpx.get(url + "/api/info").json()["n"]
        queries = sample_queries(100)
        # warm-up: compile kernels, page in the index
        warm = requests_for(queries, 1, 40, seed=1)  # one client, every kind of request, sequential
        asyncio.run(run_clients(url, warm, args.timeout))
        plan = requests_for(queries, args.clients, args.per_client)
        t = time.perf_counter()
        res = asyncio.run(run_clients(url, plan, args.timeout))
        wall = time.perf_counter() - t
        alive_after = httpx.get(url + "/api/info").status_code == 200
    finally:
        server.terminate()
        server.wait(30)
    good = [r for r in res if r[0] != "bad"]
    lat = np.asarray([r[2] for r in good]) * 1e3
    errors = [r for r in good if r[1] != 200]
    bad = [r for r in res if r[0] == "bad"]
    per_kind = {}
    for kind in sorted({r[0] for r in good}):
        lk = np.asarray([r[2] for r in good if r[0] == kind]) * 1e3
        per_kind[kind] = {"n": len(lk), "p50_ms": float(np.percentile(lk, 50)), "p99_ms": float(np.percentile(lk, 99))}
    payload = {
        "index": args.index, "n_index": n_index, "clients": args.clients, "requests": len(res),
        "valid_requests": len(good), "errors": len(errors), "error_examples": [str(e) for e in errors[:5]],
        "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
        "mean_ms": float(lat.mean()), "throughput_rps": len(res) / wall, "wall_s": wall, "per_kind": per_kind,
        "malformed_requests": len(bad), "malformed_all_4xx": all(isinstance(b[1], int) and 400 <= b[1] < 500
                                                                  for b in bad),
        "server_alive_after": alive_after, "loopback_only": True, "server_cmd": " ".join(cmd[1:]),
        "cpu_count": os.cpu_count(),
    }
    path = write_result("search_loadtest", payload, seed=0)
    print(payload)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
