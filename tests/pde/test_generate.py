import h5py
import numpy as np
import pytest

from compscope.pde import generate, load_split


def test_generation_independent_of_workers_and_chunking(tmp_path):
    a = generate("WE3", "valid", 5, seed=3, cache=tmp_path / "a", workers=1, chunk=2, progress=False)
    b = generate("WE3", "valid", 5, seed=3, cache=tmp_path / "b", workers=2, chunk=5, progress=False)
    for nx in (100, 20):
        da, db = load_split(a, nx), load_split(b, nx)
        np.testing.assert_array_equal(da["u"], db["u"])
        np.testing.assert_array_equal(da["cond"], db["cond"])
    c = generate("WE3", "valid", 5, seed=4, cache=tmp_path / "a", workers=1, chunk=2, progress=False)
    assert not np.allclose(load_split(c, 20)["u"], load_split(a, 20)["u"])


def test_combined_resolutions_are_averages_of_reference(pde_cache):
    path = generate("E1", "test", 4, seed=0, cache=pde_cache, workers=1, progress=False)
    ref = load_split(path, 200)["u"]
    for nx in (100, 50, 40):
        d = load_split(path, nx)
        assert d["u"].shape == (4, 250, nx)
        np.testing.assert_allclose(d["u"], ref.reshape(4, 250, nx, 200 // nx).mean(-1), atol=1e-6)
        np.testing.assert_allclose(d["x"], (np.arange(nx) + 0.5) * 16 / nx)
    np.testing.assert_allclose(d["t"], np.linspace(0, 4, 250))


def test_interrupted_generation_resumes(tmp_path):
    path = generate("WE1", "train", 4, seed=1, cache=tmp_path, workers=1, chunk=2, progress=False)
    full = load_split(path, 40)["u"]
    with h5py.File(path, "a") as h5:  # simulate a run killed before its second chunk was written
        h5["done"][1] = False
        h5["u/40"][2:] = 0.0
    with pytest.raises(ValueError, match="incomplete"):
        load_split(path, 40)
    generate("WE1", "train", 4, seed=1, cache=tmp_path, workers=1, chunk=2, progress=False)
    np.testing.assert_array_equal(load_split(path, 40)["u"], full)


def test_bad_inputs(tmp_path, pde_cache):
    with pytest.raises(FileNotFoundError, match="compscope pde generate"):
        load_split(tmp_path / "missing.h5", 40)
    path = generate("E1", "test", 4, seed=0, cache=pde_cache, workers=1, progress=False)
    with pytest.raises(ValueError, match="no resolution nx=64"):
        load_split(path, 64)
    with pytest.raises(ValueError, match="unknown split"):
        generate("E1", "training", 4, cache=tmp_path)
    with pytest.raises(ValueError, match="unknown equation"):
        generate("burgers", "train", 4, cache=tmp_path)


def test_box5_coarsening_is_the_authors_moving_average_on_our_cells():
    from compscope.pde import ResolutionError, coarsen

    rng = np.random.default_rng(0)
    fine = rng.normal(size=(3, 200))
    # nx = 40: a window five fine cells wide centred on a coarse cell is that cell: the block average
    np.testing.assert_allclose(coarsen(fine, 40, "box5"), coarsen(fine, 40, "block"), atol=1e-12)
    # nx = 100 (two fine cells per coarse cell): weights 0.1, 0.2 x 4, 0.1 over fine cells 2i-2 .. 2i+3
    expect = sum(w * np.roll(fine, -k, axis=-1)[..., ::2] for k, w in zip(range(-2, 4), [.1, .2, .2, .2, .2, .1]))
    np.testing.assert_allclose(coarsen(fine, 100, "box5"), expect, atol=1e-12)
    # a moving average keeps constants and damps the grid-scale mode
    for nx in (100, 50, 20):
        np.testing.assert_allclose(coarsen(np.full(200, 2.5), nx, "box5"), 2.5)
    wave = np.sin(2 * np.pi * 40 * (np.arange(200) + 0.5) / 200)  # wavelength 5 fine cells = 2.5 cells at nx=100
    assert np.abs(coarsen(wave, 100, "box5")).max() < 1e-6 * np.abs(coarsen(wave, 100, "block")).max()
    with pytest.raises(ResolutionError, match="does not divide"):
        coarsen(fine, 30)
    with pytest.raises(ValueError, match="unknown coarsening 'gauss'"):
        coarsen(fine, 40, "gauss")


def test_authors_data_use_box5_and_a_stale_cache_is_refused(tmp_path):
    from compscope.pde import coarsen, get_equation

    path = generate("E1-authors", "test", 2, seed=0, cache=tmp_path, workers=1, progress=False)
    ref = load_split(path, 200)["u"]
    np.testing.assert_allclose(load_split(path, 100)["u"], coarsen(ref, 100, "box5"), atol=1e-6)
    assert get_equation("E1").coarsening == "block"
    with h5py.File(path, "a") as h5:  # as a file written before E1-authors used the authors' filter
        h5.attrs["coarsening"] = "block"
    with pytest.raises(ValueError, match="delete the file to regenerate it"):
        generate("E1-authors", "test", 2, seed=0, cache=tmp_path, workers=1, progress=False)


def test_a_finished_cache_is_shared_with_a_job_that_reads_it(tmp_path):
    """Two jobs on one cache: while another process holds the finished file open for reading (HDF5 takes a
    shared lock), generate() must still return it instead of failing to take the write lock."""
    import subprocess
    import sys

    path = generate("WE1", "valid", 2, seed=0, cache=tmp_path, workers=1, progress=False)
    reader = subprocess.Popen([sys.executable, "-c", "import h5py, sys, time\nf = h5py.File(sys.argv[1], 'r')\n"
                               "print('open', flush=True)\ntime.sleep(60)", str(path)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert reader.stdout.readline().strip() == "open"
        with pytest.raises(OSError):  # the lock is real: a writer is refused
            h5py.File(path, "a")
        assert generate("WE1", "valid", 2, seed=0, cache=tmp_path, workers=1, progress=False) == path
        assert load_split(path, 20)["u"].shape == (2, 250, 20)
    finally:
        reader.kill()
        reader.wait()
        reader.stdout.close()
