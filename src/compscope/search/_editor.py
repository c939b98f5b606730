"""The structure editor of the web page: JSME (BSD-3-Clause) from npm, installed once, served from disk.

The web page lets a chemist draw the query instead of typing SMILES/SMARTS. The editor is JSME (Ertl & Bienfait),
published on npm as ``jsme-editor``: a GWT build of static files. It is not part of the repository and nothing is
fetched while the server runs: ``compscope search install-editor`` downloads the pinned npm tarball once, checks
its sha256 and unpacks it under the data directory (``$COMPSCOPE_DATA``/web/jsme-editor-VERSION, or ``--path``).
``compscope search serve`` serves it from there under ``/editor/``; without it the page says how to install it and
the text box works as before.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ._errors import SearchError

__all__ = ["EDITOR", "EditorPackage", "editor_dir", "find_editor", "install_editor"]


@dataclass(frozen=True)
class EditorPackage:
    """A pinned npm tarball: where it lives, its checksum and the file that loads it."""

    name: str
    version: str
    url: str
    sha256: str
    entry: str  # the script the page loads, relative to the unpacked package
    license: str

    @property
    def folder(self) -> str:
        return f"{self.name}-{self.version}"


EDITOR = EditorPackage(
    name="jsme-editor", version="0.8.2",
    url="https://registry.npmjs.org/jsme-editor/-/jsme-editor-0.8.2.tgz",
    sha256="00067a436d566235912d3f12007726d2953231bb2c889ae28bf76f037a5a94df",
    entry="jsme.nocache.js", license="BSD-3-Clause")


def editor_dir(path: str | os.PathLike | None = None) -> Path:
    """Where the editor is (or would be) installed: ``path`` if given, else ``<data dir>/web/<name>-<version>``."""
    if path is not None:
        return Path(path).expanduser()
    from compscope.data import data_dir

    return data_dir() / "web" / EDITOR.folder


def find_editor(path: str | os.PathLike | None = None) -> Path | None:
    """The installed editor folder, or None when it is not installed (the page then offers the text box only)."""
    d = editor_dir(path)
    return d if (d / EDITOR.entry).is_file() else None


def install_editor(path: str | os.PathLike | None = None, *, force: bool = False, timeout: float = 120.0,
                   package: EditorPackage = EDITOR) -> Path:
    """Download the pinned editor tarball from npm, verify its sha256 and unpack it; returns the folder.

    Idempotent: an installed editor is kept unless ``force``. Refuses a tarball whose checksum differs or which
    holds paths outside its ``package/`` folder. ``package`` names another pinned tarball (any URL urllib reads).
    """
    dest = editor_dir(path)
    if not force and (dest / package.entry).is_file():
        return dest
    try:
        with urllib.request.urlopen(package.url, timeout=timeout) as r:
            blob = r.read()
    except OSError as exc:
        raise SearchError(f"could not download the structure editor from {package.url}: {exc}",
                          hint="check the network (npm's registry must be reachable once), or copy an unpacked "
                               f"{package.folder} npm package to {dest}") from exc
    got = hashlib.sha256(blob).hexdigest()
    if got != package.sha256:
        raise SearchError(f"{package.url}: sha256 {got} differs from the pinned {package.sha256}",
                          hint="the download was corrupted or the registry changed the file; retry, and if it "
                               "persists report it")
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        for m in tar.getmembers():
            rel = Path(m.name)
            if rel.parts[:1] != ("package",) or ".." in rel.parts or rel.is_absolute():
                raise SearchError(f"unexpected path {m.name!r} in {package.url}", hint="report this; nothing was run")
            if not (m.isfile() or m.isdir()):
                continue
            out = dest.joinpath(*rel.parts[1:])
            if m.isdir():
                out.mkdir(parents=True, exist_ok=True)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(tar.extractfile(m).read())
    if find_editor(dest) is None:
        raise SearchError(f"{package.url} has no {package.entry}", hint="report this")
    return dest
