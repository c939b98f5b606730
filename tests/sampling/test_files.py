"""The sampling task's HDF5 inputs: missing, not HDF5, or of another format -> one clear error each."""

from __future__ import annotations

import h5py
import pytest

from compscope.sampling import SamplingInputError, load_dihedral_series, read_samples
from compscope.sampling._chain import read_chain_config


@pytest.mark.parametrize("reader", [read_samples, read_chain_config, load_dihedral_series])
def test_sampling_files_are_checked_before_use(tmp_path, reader):
    with pytest.raises(SamplingInputError, match="not found"):
        reader(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(SamplingInputError, match="not an HDF5 file"):
        reader(tmp_path / "text.h5")
    with h5py.File(tmp_path / "other.h5", "w") as h5:
        h5.attrs["format"] = "someone-else/1"
    if reader is load_dihedral_series:  # takes MD reference files too: refuses what is neither
        with pytest.raises(SamplingInputError):
            reader(tmp_path / "other.h5")
    else:
        with pytest.raises(SamplingInputError, match="someone-else/1"):
            reader(tmp_path / "other.h5")


def test_transition_kernel_files_are_checked(tmp_path):
    import torch

    from compscope.models.artifacts import ArtifactError, ArtifactNotFoundError
    from compscope.sampling import load_transition

    with pytest.raises(ArtifactNotFoundError, match="transition kernel .* not found"):
        load_transition(tmp_path)  # a folder without model.pt
    (tmp_path / "model.pt").write_text("junk")
    with pytest.raises(ArtifactError, match="not a readable transition kernel"):
        load_transition(tmp_path)
    torch.save({"format": "other"}, tmp_path / "model.pt")
    with pytest.raises(SamplingInputError, match="not a transition kernel"):
        load_transition(tmp_path / "model.pt")
