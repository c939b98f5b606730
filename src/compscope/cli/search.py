"""`compscope search ...` verbs: build/append an index, query it, serve it, shard it."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(
    help="(search) chemical-space search: build a .csi index, similarity/substructure/exact queries, REST + web.",
    no_args_is_help=True,
)


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    hint = getattr(exc, "hint", None)
    if hint:
        typer.secho(f"hint: {hint}", fg=typer.colors.YELLOW, err=True)
    raise typer.Exit(getattr(exc, "exit_code", 2))


def _print(result, as_json: bool, max_rows: int = 50) -> None:
    d = result.to_dict()
    if as_json:
        typer.echo(json.dumps(d, indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{d['kind']}: {d['n_hits']} hits" + (f", count {d['count']}" if d["count"] is not None else "")
              + (" (PARTIAL: time limit)" if d["partial"] else "") + f" in {d['elapsed_ms']:.1f} ms")
    cols = list(d["hits"][0].keys()) if d["hits"] else ["id", "smiles"]
    for c in cols:
        t.add_column(c)
    for h in d["hits"][:max_rows]:
        t.add_row(*[f"{h[c]:.3f}" if isinstance(h[c], float) else str(h[c]) for c in cols])
    Console().print(t)
    if d.get("next_offset") is not None:
        typer.echo(f"more hits: --offset {d['next_offset']}")


@app.command()
def build(
    source: Path = typer.Argument(..., help="molecules: .smi (SMILES [id]) or .csv/.tsv with a header, optionally .gz"),
    out: Path = typer.Option(..., "--out", "-o", help="index directory to write, e.g. lib.csi"),
    smiles_col: str | None = typer.Option(None, help="CSV column with SMILES (name or 0-based index)"),
    id_col: str | None = typer.Option(None, help="CSV column with ids (default: id/name column or row number)"),
    fp: str = typer.Option("morgan", help="fingerprint: morgan (ECFP), fcfp or maccs"),
    radius: int = typer.Option(2, help="Morgan radius"),
    nbits: int = typer.Option(2048, help="fingerprint bits"),
    counts: bool = typer.Option(False, help="count-simulated Morgan bits instead of presence bits"),
    jobs: int = typer.Option(2, "--jobs", "-j", help="worker processes"),
    chunk_size: int = typer.Option(5000, help="molecules per work item (and per checkpointed part)"),
    inchikey: bool = typer.Option(True, help="store InChIKeys (exact match by key)"),
    pattern: bool = typer.Option(True, help="store pattern fingerprints (substructure screen)"),
    properties: bool = typer.Option(True, help="store MW, logP, HBA, HBD, TPSA, rotatable bonds, rings"),
    overwrite: bool = typer.Option(False, help="replace an existing index"),
    resume: bool = typer.Option(False, help="continue an interrupted build from OUT.parts/ (same options)"),
) -> None:
    """Build a search index from a SMILES/CSV file (invalid SMILES are counted and listed in OUT/invalid.tsv).

    Every processed chunk is checkpointed under OUT.parts/; rerun with --resume after an interruption.
    """
    from compscope.search import BuildInterrupted, FingerprintSpec, SearchError, build_index

    try:
        rep = build_index(source, out, FingerprintSpec(fp, radius, nbits, counts), smiles_col=smiles_col,
                          id_col=id_col, n_jobs=jobs, chunk_size=chunk_size, inchikey=inchikey, pattern=pattern,
                          properties=properties, progress=True, overwrite=overwrite, resume=resume)
    except (SearchError, BuildInterrupted) as exc:  # interrupted: exit 128 + signal number, with the resume hint
        _fail(exc)
    _report(rep)


def _report(rep) -> None:
    typer.echo(rep.summary())
    if rep.n_invalid:
        typer.secho(f"{rep.n_invalid} invalid SMILES skipped (all listed in {rep.path / 'invalid.tsv'}):",
                    fg=typer.colors.YELLOW)
        for ln, s in rep.invalid[:10]:
            typer.echo(f"  line {ln}: {s[:70]}")


@app.command()
def append(
    index: Path = typer.Argument(..., help="existing index directory"),
    source: Path = typer.Argument(..., help="more molecules (.smi/.csv[.gz])"),
    smiles_col: str | None = typer.Option(None, help="CSV column with SMILES"),
    id_col: str | None = typer.Option(None, help="CSV column with ids"),
    jobs: int = typer.Option(2, "--jobs", "-j", help="worker processes"),
) -> None:
    """Append molecules to an index (same fingerprint settings; the index is rewritten atomically)."""
    from compscope.search import BuildInterrupted, SearchError, append_index

    try:
        rep = append_index(index, source, smiles_col=smiles_col, id_col=id_col, n_jobs=jobs, progress=True)
    except (SearchError, BuildInterrupted) as exc:
        _fail(exc)
    _report(rep)


@app.command()
def info(index: Path = typer.Argument(..., help="index directory")) -> None:
    """Show an index's size, fingerprint settings and properties."""
    from compscope.search import SearchError, SearchIndex

    try:
        idx = SearchIndex.open(index)
    except SearchError as exc:
        _fail(exc)
    h = {k: v for k, v in idx.header.items() if k != "arrays"}
    typer.echo(json.dumps(h, indent=1))


def _queries(query: str | None, queries_file: Path | None) -> list[str]:
    if queries_file is not None:
        if not queries_file.is_file():
            _fail(FileNotFoundError(f"queries file {queries_file} does not exist"))
        return [ln.split()[0] for ln in queries_file.read_text().splitlines() if ln.strip()]
    if not query:
        _fail(ValueError("give a QUERY (SMILES) or --queries FILE"))
    return [query]


@app.command()
def similar(
    index: Path = typer.Argument(..., help="index directory"),
    query: str | None = typer.Argument(None, help="query SMILES"),
    queries: Path | None = typer.Option(None, "--queries", help="file with one query SMILES per line (batch)"),
    k: int | None = typer.Option(None, "-k", min=1, help="exact top-k (default 10 unless --threshold is given)"),
    threshold: float | None = typer.Option(None, "--threshold", "-t", help="all hits with similarity >= t"),
    metric: str = typer.Option("tanimoto", help="tanimoto, dice or tversky"),
    a: float = typer.Option(0.5, help="Tversky weight of query-only bits"),
    b: float = typer.Option(0.5, help="Tversky weight of database-only bits"),
    filter: list[str] | None = typer.Option(None, "--filter", "-f", help="property range, e.g. mw=200..400"),
    max_results: int = typer.Option(1000, help="print at most this many threshold hits"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Similarity search: top-k (-k) or threshold (-t), Tanimoto/Dice/Tversky, with property filters."""
    from compscope.search import SearchError, SearchIndex

    qs = _queries(query, queries)
    try:
        idx = SearchIndex.open(index)
        for q in qs:
            if threshold is not None:
                r = idx.similarity(q, threshold, metric, a=a, b=b, filters=filter, max_results=max_results)
            else:
                r = idx.top_k(q, 10 if k is None else k, metric, a=a, b=b, filters=filter)
            if len(qs) > 1 and not as_json:
                typer.echo(f"query: {q}")
            _print(r, as_json)
    except SearchError as exc:
        _fail(exc)


@app.command()
def substructure(
    index: Path = typer.Argument(..., help="index directory"),
    query: str = typer.Argument(..., help="SMARTS or SMILES"),
    syntax: str = typer.Option("auto", help="auto, smiles or smarts"),
    offset: int = typer.Option(0, help="skip this many hits (paging)"),
    limit: int = typer.Option(100, help="hits to return"),
    time_limit: float = typer.Option(10.0, help="CPU seconds (per thread); partial result when reached"),
    count: bool = typer.Option(False, help="count all matches instead of listing hits"),
    filter: list[str] | None = typer.Option(None, "--filter", "-f", help="property range, e.g. mw=200..400"),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="threads verifying candidates (RDKit C++ matcher)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Substructure search (screens, then RDKit's C++ matcher), paged, CPU-time-limited, or counted."""
    from compscope.search import SearchError, SearchIndex

    try:
        idx = SearchIndex.open(index, pickled=False)  # one query: pickling every molecule would not pay off
        r = idx.substructure(query, syntax=syntax, offset=offset, limit=limit, time_limit=time_limit, count=count,
                             filters=filter, n_threads=jobs)
    except SearchError as exc:
        _fail(exc)
    _print(r, as_json)


@app.command()
def exact(
    index: Path = typer.Argument(..., help="index directory"),
    query: str = typer.Argument(..., help="SMILES or InChIKey"),
    by: str = typer.Option("smiles", help="match canonical SMILES or inchikey"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Exact match by canonical SMILES or InChIKey."""
    from compscope.search import SearchError, SearchIndex

    try:
        r = SearchIndex.open(index).exact(query, by=by)
    except SearchError as exc:
        _fail(exc)
    _print(r, as_json)


@app.command()
def shard(
    index: Path = typer.Argument(..., help="index directory"),
    out_dir: Path = typer.Option(..., "--out-dir", help="folder for shard_000.csi, shard_001.csi, ..."),
    n: int = typer.Option(2, "--n", help="number of shards"),
    overwrite: bool = typer.Option(False, help="replace existing shards"),
) -> None:
    """Split an index into shards for Ray actors (see compscope.search.ShardedIndex)."""
    from compscope.search import SearchError, split_index

    try:
        for p in split_index(index, out_dir, n, overwrite=overwrite):
            typer.echo(str(p))
    except SearchError as exc:
        _fail(exc)


@app.command()
def serve(
    index: Path = typer.Argument(..., help="index directory"),
    host: str = typer.Option("127.0.0.1", help="bind address"),
    port: int = typer.Option(8000, help="TCP port"),
    max_results: int = typer.Option(1000, help="cap on k / limit per request"),
    max_time_limit: float = typer.Option(10.0, help="cap on the per-query time limit (s)"),
    max_body_bytes: int = typer.Option(65536, help="largest request body accepted"),
    in_memory: bool = typer.Option(False, help="read the index into RAM instead of memory-mapping it"),
    editor: Path = typer.Option(None, help="folder of the structure editor (default: the one install-editor put "
                                           "in the data directory)"),
) -> None:
    """Serve the REST API (docs at /docs) and the web page (/) for an index."""
    from compscope.search import SearchError, SearchIndex, find_editor, serve

    try:
        idx = SearchIndex.open(index, in_memory=in_memory)
    except SearchError as exc:
        _fail(exc)
    if find_editor(editor) is None:
        typer.secho("note: no structure editor installed (the page offers the text box only); "
                    "run `compscope search install-editor` once to draw queries", err=True)
    serve(idx, host=host, port=port, max_results=max_results, max_time_limit=max_time_limit,
          max_body_bytes=max_body_bytes, editor=editor)


@app.command("install-editor")
def install_editor_cmd(
    path: Path = typer.Option(None, help="install here instead of <data dir>/web/jsme-editor-VERSION"),
    force: bool = typer.Option(False, help="download again even if installed"),
) -> None:
    """Download the web page's structure editor (JSME, BSD-3-Clause) once from npm, verify its sha256, unpack it."""
    from compscope.search import EDITOR, SearchError, install_editor

    try:
        d = install_editor(path, force=force)
    except SearchError as exc:
        _fail(exc)
    typer.echo(f"{EDITOR.folder} ({EDITOR.license}) installed in {d}")
