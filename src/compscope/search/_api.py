"""REST API (FastAPI) and web page for a search index: ``compscope search serve lib.csi --port 8000``.

Endpoints (OpenAPI docs at ``/docs``):

- ``GET  /``                 the web page (plain HTML + JS, no build step)
- ``GET  /api/info``         index size, fingerprint settings, properties, server limits
- ``POST /api/similarity``   Tanimoto/Dice/Tversky threshold search, paged with offset/limit
- ``POST /api/topk``         exact top-k
- ``POST /api/batch``        many similarity/top-k queries in one request
- ``POST /api/substructure`` SMARTS/SMILES substructure search, paging, time limit, count mode
- ``POST /api/exact``        exact match by canonical SMILES or InChIKey
- ``GET  /api/depict``       RDKit SVG depiction of a SMILES, matched atoms of ``highlight`` coloured
- ``POST /api/export``       the hits of a query (any mode) as CSV or SDF
- ``GET  /editor/...``       the structure editor's files (JSME, installed by ``compscope search install-editor``)

Bad input (invalid SMILES/SMARTS, k or limit over the cap, mismatched fingerprint settings, bodies over
the size limit) gets a 4xx with a message saying what to fix; the server keeps serving.
"""

# no `from __future__ import annotations`: FastAPI must see the request models defined inside create_app
import logging
from pathlib import Path
from typing import Any, Literal

from ._errors import SearchError

log = logging.getLogger(__name__)
WEB = Path(__file__).resolve().parent / "web"


def create_app(index: Any, *, max_body_bytes: int = 65_536, max_results: int = 1000, max_time_limit: float = 10.0,
               max_batch: int = 100, editor: str | Path | bool | None = None) -> Any:
    """Build the FastAPI app around an open :class:`SearchIndex` or :class:`ShardedIndex` (or a path).

    Args:
        index: the index to serve.
        max_body_bytes: larger request bodies get HTTP 413.
        max_results: cap on k / limit per request (HTTP 400 above it).
        max_time_limit: cap on the per-query time limit in seconds (substructure).
        max_batch: most queries in one ``/api/batch`` request.
        editor: folder of the installed structure editor; None looks in the data directory
            (:func:`~compscope.search.find_editor`), False serves the page without it.
    """
    from fastapi import FastAPI, Query, Request
    from fastapi.responses import FileResponse, JSONResponse, Response
    from pydantic import BaseModel, Field

    if isinstance(index, (str, Path)):
        from ._index import SearchIndex

        index = SearchIndex.open(index)

    from ._editor import EDITOR, find_editor
    from ._web import depict_svg, editor_file, export_hits

    editor_root = None if editor is False else find_editor(None if editor in (None, True) else editor)
    app = FastAPI(title="compscope search", version="1",
                  description="Similarity, substructure and exact search over a compscope `.csi` index.")

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        if request.method in ("POST", "PUT", "PATCH"):
            n = request.headers.get("content-length")
            if n is not None and n.isdigit() and int(n) > max_body_bytes:
                return JSONResponse(status_code=413, content={
                    "detail": f"request body of {n} bytes exceeds the limit of {max_body_bytes}; send fewer or "
                              "shorter queries"})
            if n is None:
                body = await request.body()
                if len(body) > max_body_bytes:
                    return JSONResponse(status_code=413, content={
                        "detail": f"request body exceeds the limit of {max_body_bytes} bytes"})
        return await call_next(request)

    @app.exception_handler(SearchError)
    async def search_error(request: Request, exc: SearchError):
        return JSONResponse(status_code=400, content={"detail": str(exc), "error": type(exc).__name__})

    def cap(name: str, v: int) -> int:
        if v > max_results:
            raise SearchError(f"{name}={v} exceeds this server's cap of {max_results}; page with offset instead")
        return v

    Filters = dict[str, list[float | None]] | str | None

    class FingerprintIn(BaseModel):
        kind: str = "morgan"
        radius: int = 2
        nbits: int = 2048
        counts: bool = False

    class SimilarityIn(BaseModel):
        query: str = Field(..., description="SMILES of the query molecule", max_length=2000)
        threshold: float = Field(0.7, gt=0, le=1)
        metric: Literal["tanimoto", "dice", "tversky"] = "tanimoto"
        a: float = Field(0.5, ge=0, description="Tversky weight of query-only bits")
        b: float = Field(0.5, ge=0, description="Tversky weight of database-only bits")
        filters: Filters = Field(None, description='property ranges, e.g. {"mw": [200, 400]} or "mw=200..400"')
        offset: int = Field(0, ge=0)
        limit: int = Field(100, ge=1)
        fingerprint: FingerprintIn | None = Field(None, description="settings you expect; mismatch -> 400")

    class TopKIn(BaseModel):
        query: str = Field(..., max_length=2000)
        k: int = Field(10, ge=1)
        metric: Literal["tanimoto", "dice", "tversky"] = "tanimoto"
        a: float = Field(0.5, ge=0)
        b: float = Field(0.5, ge=0)
        threshold: float = Field(0.0, ge=0, le=1)
        filters: Filters = None
        fingerprint: FingerprintIn | None = None

    class BatchIn(BaseModel):
        queries: list[str] = Field(..., min_length=1)
        mode: Literal["topk", "similarity"] = "topk"
        k: int = Field(10, ge=1)
        threshold: float = Field(0.7, gt=0, le=1)
        metric: Literal["tanimoto", "dice", "tversky"] = "tanimoto"
        filters: Filters = None

    class SubstructureIn(BaseModel):
        query: str = Field(..., description="SMARTS or SMILES", max_length=2000)
        syntax: Literal["auto", "smiles", "smarts"] = "auto"
        offset: int = Field(0, ge=0)
        limit: int = Field(100, ge=1)
        time_limit: float | None = Field(None, gt=0, description="seconds (default: the server's cap)")
        count: bool = False
        filters: Filters = None

    class ExactIn(BaseModel):
        query: str = Field(..., description="SMILES or InChIKey", max_length=2000)
        by: Literal["smiles", "inchikey"] = "smiles"

    def fp(x):
        return x.model_dump() if x is not None else None

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(WEB / "index.html", media_type="text/html")

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str):
        f = WEB / name
        if name not in ("app.js", "style.css") or not f.is_file():
            return JSONResponse(status_code=404, content={"detail": f"no static file {name!r}"})
        return FileResponse(f, media_type="text/javascript" if name.endswith(".js") else "text/css")

    @app.get("/api/info")
    def info() -> dict:
        """Index size, fingerprint settings, properties and this server's limits."""
        return {"n": len(index), "fingerprint": index.spec.to_dict(), "properties": index.property_names,
                "editor": {"installed": editor_root is not None, "script": f"/editor/{EDITOR.entry}",
                           "name": EDITOR.folder, "install": "compscope search install-editor"},
                "limits": {"max_results": max_results, "max_time_limit": max_time_limit,
                           "max_body_bytes": max_body_bytes, "max_batch": max_batch}}

    @app.post("/api/similarity")
    def similarity(req: SimilarityIn) -> dict:
        """All molecules with similarity >= threshold, best first, paged by offset/limit."""
        cap("limit", req.limit)
        r = index.similarity(req.query, req.threshold, req.metric, a=req.a, b=req.b, filters=req.filters,
                             fingerprint=fp(req.fingerprint))
        d = _page(r.to_dict(), req.offset, req.limit)
        return d | {"query": req.query}

    @app.post("/api/topk")
    def topk(req: TopKIn) -> dict:
        """Exact k most similar molecules."""
        cap("k", req.k)
        r = index.top_k(req.query, req.k, req.metric, a=req.a, b=req.b, threshold=req.threshold,
                        filters=req.filters, fingerprint=fp(req.fingerprint))
        return r.to_dict() | {"query": req.query}

    @app.post("/api/batch")
    def batch(req: BatchIn) -> dict:
        """Several similarity or top-k queries at once (at most ``max_batch``)."""
        if len(req.queries) > max_batch:
            raise SearchError(f"{len(req.queries)} queries exceed the batch cap of {max_batch}; split the batch")
        cap("k", req.k)
        out = []
        for q in req.queries:
            if req.mode == "topk":
                r = index.top_k(q, req.k, req.metric, filters=req.filters)
            else:
                r = index.similarity(q, req.threshold, req.metric, filters=req.filters, max_results=max_results)
            out.append(r.to_dict() | {"query": q})
        return {"results": out}

    @app.post("/api/substructure")
    def substructure(req: SubstructureIn) -> dict:
        """Substructure hits offset..offset+limit (or a count), stopped at the time limit (``partial``)."""
        cap("limit", req.limit)
        tl = max_time_limit if req.time_limit is None else req.time_limit
        if tl > max_time_limit:
            raise SearchError(f"time_limit={tl} s exceeds this server's cap of {max_time_limit} s")
        r = index.substructure(req.query, syntax=req.syntax, offset=req.offset, limit=req.limit,
                               time_limit=tl, count=req.count, filters=req.filters)
        return r.to_dict() | {"query": req.query, "offset": req.offset}

    @app.post("/api/exact")
    def exact(req: ExactIn) -> dict:
        """Exact match by canonical SMILES or InChIKey."""
        return index.exact(req.query, by=req.by).to_dict() | {"query": req.query}

    @app.get("/api/depict", responses={200: {"content": {"image/svg+xml": {}}}})
    def depict(smiles: str = Query(..., max_length=2000), width: int = Query(220, ge=50, le=1000),
               height: int = Query(160, ge=50, le=1000),
               highlight: str | None = Query(None, max_length=2000, description="substructure query to colour"),
               syntax: Literal["auto", "smiles", "smarts"] = "auto"):
        """SVG depiction (RDKit) of a SMILES; the atoms and bonds matched by ``highlight`` are coloured."""
        return Response(depict_svg(smiles, width, height, highlight or None, syntax), media_type="image/svg+xml",
                        headers={"Cache-Control": "max-age=3600"})

    searches = {"topk": (TopKIn, topk), "similarity": (SimilarityIn, similarity),
                "substructure": (SubstructureIn, substructure), "exact": (ExactIn, exact)}

    @app.post("/api/export")
    def export(body: dict, format: Literal["csv", "sdf"] = "csv",
               mode: Literal["topk", "similarity", "substructure", "exact"] = "topk"):
        """The hits of one query as a CSV or SDF download. The body is the request of ``mode``'s endpoint;
        paged modes return up to the server's cap from ``offset`` (default: all hits up to the cap)."""
        from fastapi.exceptions import RequestValidationError
        from pydantic import ValidationError

        model, run = searches[mode]
        if mode in ("similarity", "substructure"):
            body = {"limit": max_results} | body
        try:
            req = model.model_validate(body)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from None
        data, media, name = export_hits(run(req)["hits"], format)
        return Response(data, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.get("/editor/{name:path}", include_in_schema=False)
    def editor_files(name: str):
        found = editor_file(editor_root, name)
        if found is None:
            detail = (f"no editor file {name!r}" if editor_root is not None else
                      "the structure editor is not installed; run `compscope search install-editor`")
            return JSONResponse(status_code=404, content={"detail": detail})
        return FileResponse(found[0], media_type=found[1], headers={"Cache-Control": "max-age=86400"})

    return app


def _page(d: dict, offset: int, limit: int) -> dict:
    n = len(d["hits"])
    d["n_total"] = n
    d["hits"] = d["hits"][offset : offset + limit]
    d["n_hits"] = len(d["hits"])
    d["offset"] = offset
    d["next_offset"] = offset + limit if offset + limit < n else None
    return d


def serve(index: Any, host: str = "127.0.0.1", port: int = 8000, **kw) -> None:
    """Run the app with uvicorn (blocking)."""
    import uvicorn

    uvicorn.run(create_app(index, **kw), host=host, port=port, log_level="info")
