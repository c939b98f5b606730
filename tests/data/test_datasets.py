import shutil

import pytest

from compscope.data import datasets as D

from ..conftest import SHARED_DATA


def test_registry_complete():
    for name in ("rmd17", "3bpa", "acac", "moses", "qm9"):
        ds = D.get_dataset(name)
        assert ds.license and ds.citation and ds.units
        if ds.fetch != "pypi":
            assert all(len(f.sha256) == 64 and f.source for f in ds.files)
    with pytest.raises(KeyError, match="known"):
        D.get_dataset("nope")


def test_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv(D.ENV_VAR, str(tmp_path / "env"))
    assert D.data_dir() == tmp_path / "env"
    assert D.data_dir(tmp_path / "explicit") == tmp_path / "explicit"
    monkeypatch.delenv(D.ENV_VAR)
    assert "compscope" in str(D.data_dir())


def test_missing_dataset_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="compscope data fetch rmd17"):
        D.dataset_path("rmd17", "ethanol_train.xyz", path=tmp_path)


def test_verify_detects_corruption(tmp_path, ethanol_xyz):
    folder = tmp_path / "rmd17"
    folder.mkdir()
    shutil.copy(ethanol_xyz, folder / "ethanol_train.xyz")  # a 60-frame subset: wrong checksum
    rows = {r.file: r.status for r in D.verify("rmd17", path=tmp_path)}
    assert rows["ethanol_train.xyz"] == "checksum mismatch"
    assert rows["ethanol_test.xyz"] == "missing"


@pytest.mark.skipif(not SHARED_DATA.exists(), reason="../shared/data not beside the checkout")
def test_verify_shared_data():
    rows = D.verify(path=SHARED_DATA)
    bad = [r for r in rows if r.status not in ("ok", "package missing")]
    assert not bad, bad
