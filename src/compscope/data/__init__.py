"""Atoms and graphs: typed keys, extxyz I/O, neighbour lists, the dataset registry."""

from . import _keys as keys
from ._graph import AtomicGraph, graphs_from_atoms
from ._io import load_graphs, read_extxyz, write_extxyz
from ._labels import DataFormatError, extract_labels
from ._neighbors import neighbor_list
from .datasets import REGISTRY, data_dir, dataset_path, fetch, get_dataset, verify

__all__ = [
    "keys", "AtomicGraph", "graphs_from_atoms", "DataFormatError", "extract_labels", "load_graphs",
    "read_extxyz", "write_extxyz", "neighbor_list", "REGISTRY", "data_dir", "dataset_path", "fetch",
    "get_dataset", "verify",
]
