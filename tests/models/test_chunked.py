"""Memory-lean inference: messages evaluated in chunks of edges give the same energies, forces and stress as all
edges at once (fused CPU kernels and dense contractions, float32 and float64), and autograd keeps far fewer bytes."""

import pytest
import torch
from ase.io import read

from compscope.data import AtomicGraph
from compscope.data import keys as K
from compscope.models import build_model

from ..conftest import FIXTURES

TOL = {torch.float32: 2e-5, torch.float64: 1e-10}


def _setup(dtype, fused=True):
    torch.manual_seed(0)
    model = build_model(preset="tiny", species=[1, 8], r_max=4.0, avg_num_neighbors=25.0).to(dtype).eval()
    model.fused_kernels = fused
    atoms = read(FIXTURES / "water" / "water_test_4.extxyz", 0)
    g = AtomicGraph.from_atoms(atoms, 4.0, energy_key=None, forces_key=None, dtype=dtype)
    return model, g


def _run(model, g, chunk):
    model.edge_chunk_size = chunk
    out = model(g, compute_forces=True, compute_stress=True)
    return {k: v.detach() for k, v in out.items()}


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "dense"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_chunked_equals_unchunked(dtype, fused):
    model, g = _setup(dtype, fused)
    ref = _run(model, g, None)
    scale = float(ref[K.FORCES].abs().max())
    for chunk in (997, 4096, g.num_edges - 1):  # uneven chunks, one that leaves a short last chunk
        out = _run(model, g, chunk)
        assert float((out[K.FORCES] - ref[K.FORCES]).abs().max()) <= TOL[dtype] * scale
        assert abs(float(out[K.ENERGY] - ref[K.ENERGY])) <= TOL[dtype] * max(1.0, abs(float(ref[K.ENERGY])))
        assert float((out[K.STRESS] - ref[K.STRESS]).abs().max()) <= TOL[dtype] * float(ref[K.STRESS].abs().max())
    assert _run(model, g, g.num_edges + 5)[K.FORCES].equal(ref[K.FORCES])  # one chunk: the plain path


def test_chunked_keeps_fewer_bytes_for_backward():
    """Bytes that autograd keeps for the force backward (unique storages), with the small preset's radial MLP."""
    torch.manual_seed(0)
    model = build_model(preset="tiny", species=[1, 8], r_max=4.0, radial_hidden=(64, 64)).float().eval()
    _, g = _setup(torch.float32)

    def saved_bytes(chunk):
        model.edge_chunk_size = chunk
        storages = {}

        def pack(t):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(g, compute_forces=True)
        return sum(storages.values())

    full, lean = saved_bytes(None), saved_bytes(1000)
    assert lean < 0.5 * full, (full, lean)
    assert (full - lean) / g.num_edges > 500  # bytes per edge no longer held across the whole graph


def test_training_ignores_chunks():
    """Chunks are an inference option: a training forward (create_graph) takes the plain path."""
    model, g = _setup(torch.float64)
    model.edge_chunk_size = 500
    out = model(g, compute_forces=True, training=True)
    loss = out[K.FORCES].pow(2).sum()
    loss.backward()
    assert all(p.grad is not None for p in model.interactions[0].radial_mlp.parameters())
