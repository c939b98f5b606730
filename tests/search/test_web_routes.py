"""What the web page uses besides the query endpoints, on a real server: highlighted depictions, CSV/SDF export,
the editor's files, and the editor install (checksum and path checks on local tarballs)."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile

import pytest

from ._server import running_server


@pytest.fixture(scope="module")
def editor_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("editor")
    (root / "jsme.nocache.js").write_text("// entry\n")
    (root / "deferredjs").mkdir()
    (root / "deferredjs" / "ABC123").write_text("// split\n")
    (root.parent / "secret.txt").write_text("not served")
    return root


@pytest.fixture(scope="module")
def client(index, editor_root):
    import httpx

    from compscope.search import create_app

    with running_server(create_app(index, max_results=50, editor=editor_root)) as u, \
            httpx.Client(base_url=u, timeout=120) as c:
        yield c


def test_depiction_highlights_the_matched_atoms_only_when_asked(client):
    from compscope.search._web import HIGHLIGHT_HEX

    plain = client.get("/api/depict", params={"smiles": "Oc1ccccc1CCN"})
    lit = client.get("/api/depict", params={"smiles": "Oc1ccccc1CCN", "highlight": "c1ccccc1O"})
    miss = client.get("/api/depict", params={"smiles": "Oc1ccccc1CCN", "highlight": "C(=O)Cl"})
    assert plain.status_code == lit.status_code == miss.status_code == 200
    assert HIGHLIGHT_HEX not in plain.text and HIGHLIGHT_HEX not in miss.text
    assert HIGHLIGHT_HEX in lit.text
    # one coloured shape per matched atom: 7 atoms of phenol, none of the ethylamine tail
    lit_atoms = {int(a) for a in re.findall(r"<ellipse[^>]*class='atom-(\d+)'[^>]*fill:" + HIGHLIGHT_HEX, lit.text)}
    assert lit_atoms == set(range(7))  # O is atom 0, the ring atoms 1-6; the CCN tail (7-9) stays plain
    bad = client.get("/api/depict", params={"smiles": "CCO", "highlight": "[C;"})
    assert bad.status_code == 400 and "invalid" in bad.json()["detail"]


def test_highlight_covers_every_match_and_its_bonds():
    from rdkit import Chem

    from compscope.search._web import highlight_atoms

    mol = Chem.MolFromSmiles("c1ccccc1Cc1ccncc1")
    atoms, bonds = highlight_atoms(mol, Chem.MolFromSmarts("a1aaaaa1"))
    assert atoms == list(range(6)) + list(range(7, 13))
    assert len(bonds) == 12 and mol.GetBondBetweenAtoms(5, 6).GetIdx() not in bonds


def test_export_csv_and_sdf_hold_the_same_hits_as_the_query(client, index):
    import csv

    from rdkit import Chem

    body = {"query": "c1ccncc1"}
    hits = client.post("/api/substructure", json=body | {"limit": 50}).json()["hits"]
    r = client.post("/api/export", params={"format": "csv", "mode": "substructure"}, json=body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert 'filename="hits.csv"' in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [x["id"] for x in rows] == [h["id"] for h in hits] == index.substructure("c1ccncc1", limit=50).ids

    r = client.post("/api/export", params={"format": "sdf", "mode": "topk"}, json={"query": "c1ccccc1O", "k": 7})
    assert r.status_code == 200
    mols = [m for m in Chem.ForwardSDMolSupplier(io.BytesIO(r.content))]
    top = index.top_k("c1ccccc1O", 7)
    assert [m.GetProp("_Name") for m in mols] == top.ids
    assert [float(m.GetProp("score")) for m in mols] == pytest.approx(list(top.scores), abs=1e-6)
    assert all(m.GetNumConformers() == 1 for m in mols)
    assert [Chem.MolToSmiles(m) for m in mols] == [Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s in top.smiles]


def test_export_refuses_bad_requests_with_a_message(client):
    r = client.post("/api/export", params={"format": "xlsx", "mode": "topk"}, json={"query": "CCO"})
    assert r.status_code == 422
    r = client.post("/api/export", params={"format": "csv", "mode": "topk"}, json={"k": 5})
    assert r.status_code == 422 and "query" in r.text
    r = client.post("/api/export", params={"format": "csv", "mode": "similarity"},
                    json={"query": "CCO", "threshold": 0.3, "limit": 10_000})
    assert r.status_code == 400 and "cap" in r.json()["detail"]
    r = client.post("/api/export", params={"format": "csv", "mode": "substructure"}, json={"query": "C1CC("})
    assert r.status_code == 400 and "invalid" in r.json()["detail"]


def test_editor_files_are_served_from_the_install_folder_only(client, editor_root):
    r = client.get("/editor/jsme.nocache.js")
    assert r.status_code == 200 and r.text == "// entry\n" and "javascript" in r.headers["content-type"]
    r = client.get("/editor/deferredjs/ABC123")
    assert r.status_code == 200 and "javascript" in r.headers["content-type"]
    assert client.get("/editor/nothing.js").status_code == 404
    assert client.get("/editor/..%2Fsecret.txt").status_code == 404
    info = client.get("/api/info").json()["editor"]
    assert info["installed"] and info["script"] == "/editor/jsme.nocache.js"


def test_page_without_editor_says_how_to_install_it(index, tmp_path):
    import httpx

    from compscope.search import create_app

    with running_server(create_app(index, editor=tmp_path / "none")) as u:
        info = httpx.get(u + "/api/info", timeout=60).json()["editor"]
        assert not info["installed"] and info["install"] == "compscope search install-editor"
        r = httpx.get(u + "/editor/jsme.nocache.js", timeout=60)
        assert r.status_code == 404 and "install-editor" in r.json()["detail"]


def _tarball(tmp_path, members: dict[str, bytes]):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
    p = tmp_path / "pkg.tgz"
    p.write_bytes(buf.getvalue())
    return p, hashlib.sha256(buf.getvalue()).hexdigest()


def test_install_editor_checks_sha256_and_paths(tmp_path):
    from compscope.search import SearchError, find_editor, install_editor
    from compscope.search._editor import EditorPackage

    def pkg(path, sha):
        return EditorPackage(name="x", version="1", url=path.as_uri(), sha256=sha, entry="jsme.nocache.js",
                             license="BSD-3-Clause")

    good, sha = _tarball(tmp_path, {"package/jsme.nocache.js": b"//", "package/deferredjs/A": b"//a"})
    dest = install_editor(tmp_path / "ok", package=pkg(good, sha))
    assert (dest / "deferredjs" / "A").read_bytes() == b"//a"
    with pytest.raises(SearchError, match="sha256"):
        install_editor(tmp_path / "bad", package=pkg(good, "0" * 64))
    evil, sha = _tarball(tmp_path, {"package/jsme.nocache.js": b"//", "package/../../evil.js": b"x"})
    with pytest.raises(SearchError, match="unexpected path"):
        install_editor(tmp_path / "evil", package=pkg(evil, sha))
    assert not (tmp_path / "evil.js").exists() and find_editor(tmp_path / "bad") is None
    with pytest.raises(SearchError, match="could not download"):
        install_editor(tmp_path / "gone", package=pkg(tmp_path / "missing.tgz", sha))
