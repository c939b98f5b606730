import numpy as np
import pytest
import torch

from compscope.data import AtomicGraph, DataFormatError, load_graphs, read_extxyz, write_extxyz
from compscope.data import keys as K


def test_read_fixture_labels(ethanol_xyz):
    graphs = load_graphs(ethanol_xyz, cutoff=5.0, index=":5")
    assert len(graphs) == 5
    g = graphs[0]
    assert g.positions.shape == (9, 3) and g.forces.shape == (9, 3)
    assert g.energy.shape == (1,) and g.energy.item() == pytest.approx(-4209.4657843064815)
    assert g.atomic_numbers.tolist().count(1) == 6
    # a full molecule within 5 Å: every atom sees the 8 others
    assert g.num_edges == 9 * 8
    assert g.info[0]["config_type"] == "Training_set"


def test_custom_keys_roundtrip(tmp_path, ethanol_xyz):
    frames = read_extxyz(ethanol_xyz, index=":3")
    e = np.array([1.0, 2.0, 3.0])
    f = [np.full((9, 3), float(i)) for i in range(3)]
    out = tmp_path / "pred.xyz"
    write_extxyz(out, frames, energies=e, forces=f, energy_key="MACE_energy", forces_key="MACE_forces")
    graphs = load_graphs(out, 5.0, energy_key="MACE_energy", forces_key="MACE_forces")
    assert [g.energy.item() for g in graphs] == [1.0, 2.0, 3.0]
    assert torch.all(graphs[2].forces == 2.0)
    ref = load_graphs(out, 5.0, energy_key="REF_energy", forces_key="REF_forces")
    assert ref[0].energy.item() == pytest.approx(-4209.4657843064815)


def test_missing_key_names_frame_and_keys(ethanol_xyz):
    with pytest.raises(DataFormatError, match=r"frame 0.*REF_energy.*keys"):
        load_graphs(ethanol_xyz, 5.0, energy_key="REF_energy", index=":2")


def test_malformed_file(tmp_path):
    p = tmp_path / "bad.xyz"
    p.write_text("3\ncomment\nH 0 0 0\nH 1 1\n")
    with pytest.raises(DataFormatError, match="bad.xyz.*extended XYZ"):
        read_extxyz(p)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.xyz"
    p.write_text("")
    with pytest.raises(DataFormatError, match="empty"):
        read_extxyz(p)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="compscope data list"):
        read_extxyz(tmp_path / "nope.xyz")


def test_nan_positions(tmp_path):
    p = tmp_path / "nan.xyz"
    p.write_text('2\nProperties=species:S:1:pos:R:3 energy=1.0\nH 0 0 0\nH nan 0 0\n')
    with pytest.raises(DataFormatError, match="frame 0.*NaN"):
        read_extxyz(p)


def test_unknown_element(tmp_path):
    p = tmp_path / "x.xyz"
    p.write_text('2\nProperties=species:S:1:pos:R:3\nH 0 0 0\nXx 1 0 0\n')
    with pytest.raises(DataFormatError):
        read_extxyz(p)


def test_collate_split_roundtrip(ethanol_xyz):
    graphs = load_graphs(ethanol_xyz, 3.0, index=":4")
    batch = AtomicGraph.collate(graphs)
    assert batch.num_graphs == 4 and batch.num_nodes == 36
    assert batch.batch.tolist() == sum(([i] * 9 for i in range(4)), [])
    for a, b in zip(graphs, batch.split()):
        assert torch.equal(a.edge_index, b.edge_index)
        assert torch.equal(a.positions, b.positions)
        assert torch.equal(a.forces, b.forces)
    # edge vectors are consistent with the neighbour list's cutoff
    assert float(batch.edge_vectors().norm(dim=-1).max()) < 3.0


def test_dtype_and_keys_constants(ethanol_xyz):
    g = load_graphs(ethanol_xyz, 5.0, index=":1")[0].to(dtype=torch.float32)
    assert g.positions.dtype == torch.float32 and g.atomic_numbers.dtype == torch.long
    assert K.POSITIONS == "positions" and K.FORCES in K.PER_ATOM_KEYS
