"""The equivariant force-field network (MACE-style): energies as per-atom sums, forces by autograd."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from e3nn import o3
from torch import nn

from compscope.data import AtomicGraph
from compscope.data import keys as K
from compscope.errors import CompscopeError
from compscope.nn import (
    ElementLinear,
    Interaction,
    LinearReadout,
    MLPReadout,
    ProductBasis,
    RadialEmbedding,
    edge_geometry,
    edge_pairs,
    fused_available,
    gate_for,
    geometry_supported,
    potential_outputs,
    scatter_sum,
)


class UnknownElementError(CompscopeError, ValueError):
    """A structure contains an element the model was not trained on."""


def species_lookup(species) -> torch.Tensor:
    """Table (119,) from atomic number to the model's element index (-1 for unknown elements)."""
    table = torch.full((119,), -1, dtype=torch.long)
    for i, z in enumerate(species):
        table[int(z)] = i
    return table


def species_index(table: torch.Tensor, atomic_numbers: torch.Tensor, species) -> torch.Tensor:
    """Element indices (N,) of ``atomic_numbers``; raises :class:`UnknownElementError` naming unknown elements."""
    if (atomic_numbers < 0).any() or (atomic_numbers > 118).any():
        raise UnknownElementError(f"atomic numbers out of range: {atomic_numbers.unique().tolist()}",
                                  hint="atomic numbers run from 1 (H) to 118; check the structure's species")
    idx = table[atomic_numbers]
    if (idx < 0).any():
        unknown = sorted(set(atomic_numbers[idx < 0].tolist()))
        raise UnknownElementError(
            f"elements {unknown} are unknown to this model (trained on atomic numbers {list(species)})",
            hint="use a model trained on these elements, or retrain with data containing them",
        )
    return idx


class EquivariantPotential(nn.Module):
    """E(3)-equivariant interatomic potential: message passing with higher body order (MACE-style).

    The constructor arguments are the model's config schema (YAML).

    Args:
        species: atomic numbers the model knows (order defines the one-hot encoding).
        r_max: cutoff radius in Å.
        num_bessel: radial Bessel functions.
        poly_p: smoothness of the polynomial cutoff envelope.
        max_ell: largest ``l`` of the edge spherical harmonics and of the atomic basis.
        hidden_irreps: node-feature irreps between interactions, e.g. ``"32x0e+32x1o"``.
        num_interactions: message-passing layers.
        correlation: body order minus one of the product basis (MACE: 3).
        product_l_max: largest ``l`` kept in intermediate products of the product basis.
        radial_hidden: widths of the radial MLP.
        readout_hidden: width of the last layer's MLP readout.
        avg_num_neighbors: normalisation of the neighbour sum (set from data by the trainer).
        atomic_energies: isolated-atom/reference energies per species (eV), added to the per-atom energy.
        scale: initial scale of the learned interaction energy (eV), e.g. the RMS of force components.
        shift: initial per-atom energy shift (eV), learned per element.
        isolated_e0: make an isolated atom's energy exactly its E0: the network's one-body term (what it gives an
            atom without neighbours, from the self-connections and readouts) is subtracted per species, and the
            shift is switched on by the atom's smooth coordination number c = sum of the cutoff envelope over its
            neighbours, as ``shift * (1 - exp(-c))`` (about the full shift inside a molecule, zero when alone), so
            the learned energy vanishes as atoms separate. Packages saved before this option existed load with it
            off (their energies were trained without it).

    Shapes:
        forward(graph) -> {energy: (G,), forces: (N, 3), node_energy: (N,), [stress: (G, 3, 3)]}
    """

    def __init__(
        self,
        species: Sequence[int],
        r_max: float = 5.0,
        num_bessel: int = 8,
        poly_p: int = 6,
        max_ell: int = 2,
        hidden_irreps: str = "32x0e+32x1o",
        num_interactions: int = 2,
        correlation: int = 3,
        product_l_max: int = 1,
        radial_hidden: Sequence[int] = (64, 64),
        readout_hidden: int = 16,
        avg_num_neighbors: float = 8.0,
        atomic_energies: Sequence[float] | None = None,
        scale: float = 1.0,
        shift: float = 0.0,
        isolated_e0: bool = True,
    ):
        super().__init__()
        self.species = [int(z) for z in species]
        self.cutoff = float(r_max)
        self.isolated_e0 = bool(isolated_e0)
        n_el = len(self.species)
        self.register_buffer("z_to_index", species_lookup(self.species), persistent=False)
        e0 = torch.zeros(n_el) if atomic_energies is None else torch.as_tensor(atomic_energies, dtype=torch.float64)
        if e0.shape != (n_el,):
            raise ValueError(f"atomic_energies needs {n_el} values (one per species), got {tuple(e0.shape)}")
        self.register_buffer("atomic_energies", e0.to(torch.get_default_dtype()))
        # float64 master of the E0s: the total energy is accumulated in float64 (see forward), so a float32 model
        # still reports totals of ~1e5 eV to sub-meV (float32 alone rounds such a sum to ~8 meV)
        self._e0_64 = e0.to(torch.float64)
        # fused CPU kernels for the tensor products (compscope.nn._fused; twice differentiable, so training uses
        # them too); False selects the dense torch contractions (what runs on GPUs)
        self.fused_kernels = True
        # inference on big boxes: messages in chunks of this many edges (edge pairs on the fused path) under
        # activation checkpointing (Interaction._chunked); None evaluates all edges at once. Not used in training.
        self.edge_chunk_size: int | None = None
        # inference on the fused CPU path: the radial MLPs read from spline tables of this many intervals over
        # [0, r_max] (compscope.nn._radial_table; deviation from the network ~1e-9 relative at 1024), no per-edge
        # radial activations. None: the network itself. Not used in training (forward(training=True)).
        self.radial_table_intervals: int | None = None
        self._radial_tables: list | None = None
        # inference on the tabulated path: the node-wise steps between edge products in blocks of this many atoms
        # (cache-sized arrays on big boxes; same result); None: all atoms at once
        self.node_chunk_size: int | None = 4096
        self.register_load_state_dict_post_hook(_sync_e0)
        # learnable per-element scale and shift of the interaction energy
        self.element_scale = nn.Parameter(torch.full((n_el,), float(scale)))
        self.element_shift = nn.Parameter(torch.full((n_el,), float(shift)))

        hidden = o3.Irreps(hidden_irreps).simplify()
        mul = hidden[0].mul
        self.irreps_sh = o3.Irreps.spherical_harmonics(max_ell)
        self.sh = o3.SphericalHarmonics(self.irreps_sh, normalize=True, normalization="component")
        self.radial = RadialEmbedding(r_max, num_bessel, poly_p)
        self.embedding = ElementLinear(o3.Irreps(f"{n_el}x0e"), o3.Irreps(f"{mul}x0e"), 1)

        irreps_a = o3.Irreps([(mul, ir) for _, ir in self.irreps_sh])  # atomic basis: every l up to max_ell
        self.interactions = nn.ModuleList()
        self.products = nn.ModuleList()
        self.gates = nn.ModuleList()
        self.self_connections = nn.ModuleList()
        self.readouts = nn.ModuleList()
        irreps_node = o3.Irreps(f"{mul}x0e")
        for layer in range(num_interactions):
            last = layer == num_interactions - 1
            irreps_out = o3.Irreps(f"{mul}x0e") if last else hidden
            self.interactions.append(
                Interaction(irreps_node, self.irreps_sh, irreps_a, self.radial.out_dim, tuple(radial_hidden),
                            avg_num_neighbors)
            )
            gate_in, gate = gate_for(irreps_out)
            self.products.append(ProductBasis(irreps_a, gate_in, n_el, correlation, l_max=product_l_max))
            self.gates.append(gate)
            self.self_connections.append(ElementLinear(irreps_node, gate_in, n_el))
            self.readouts.append(MLPReadout(irreps_out, readout_hidden) if last else LinearReadout(irreps_out))
            irreps_node = irreps_out

    # ------------------------------------------------------------------------------------------
    @property
    def receptive_field(self) -> float:
        """How far (Å) an atom's energy can see: ``num_interactions x r_max`` (each layer passes messages over
        one cutoff). A domain-decomposed engine needs ghost atoms this far out (``compscope.integrations.lammps``)."""
        return len(self.interactions) * self.cutoff

    def species_index(self, atomic_numbers: torch.Tensor) -> torch.Tensor:
        return species_index(self.z_to_index, atomic_numbers, self.species)

    def node_energies(
        self,
        positions: torch.Tensor,  # (N, 3), possibly strained
        node_attrs: torch.Tensor,  # (N, n_el) one-hot
        species_idx: torch.Tensor,  # (N,)
        edge_index: torch.Tensor,  # (2, E)
        cell_shifts: torch.Tensor,  # (E, 3)
        edge_cell: torch.Tensor,  # (E, 3, 3) cell of each edge's structure
        fused: bool = False,
        include_e0: bool = True,
        chunk: int | None = None,
        receivers: list[int] | None = None,
        tabulated: bool = False,
    ) -> torch.Tensor:
        """Per-atom energies (N,) in eV (without the reference energies E0 if ``include_e0`` is off). Sizes come
        from tensor shapes only, so the method traces (TorchScript).

        ``fused=True`` selects the fused CPU kernels (:mod:`compscope.nn._fused`, differentiable twice: forces and
        force losses); :meth:`forward` passes :attr:`fused_kernels`. ``chunk`` evaluates the messages in chunks of
        edges (:attr:`edge_chunk_size`; memory-lean inference on big boxes, same result).

        ``receivers`` (blocked evaluation, :func:`compscope.models.block_evaluate`): layer ``l`` computes only the
        first ``receivers[l]`` atoms (non-increasing), from the edges into them; edges must be sorted by receiver
        (as :func:`compscope.data.neighbor_list` gives them). The result is then the energies (receivers[-1],) of
        the leading atoms, exact when each layer's receivers have all their neighbours among the previous
        layer's.

        ``tabulated`` (inference on the fused path, :attr:`radial_table_intervals` set) reads the radial weights
        from spline tables of the radial MLPs (:meth:`radial_tables`) instead of evaluating them per edge."""
        tables = (self.radial_tables(positions.dtype)
                  if tabulated and fused and self.radial_table_intervals is not None and fused_available(positions)
                  else None)
        if receivers is not None:
            return self._pruned_node_energies(positions, node_attrs, species_idx, edge_index, cell_shifts,
                                              edge_cell, fused, include_e0, chunk, receivers, tables)
        recv = edge_index[1]
        lengths, edge_sh, envelope = self._edge_features(positions, edge_index, cell_shifts, edge_cell,
                                                         tables is not None)
        # (E, num_bessel), exactly 0 beyond r_max; not needed with tables (they take the lengths)
        edge_radial = self.radial(lengths) if tables is None else None

        # reverse edges share radial weights in the fused path (computed once per call: edges change between calls)
        pairs = (edge_pairs(edge_index, cell_shifts) if fused and fused_available(positions) and tables is None
                 else None)
        h = self.embedding(node_attrs)  # (N, mul)
        if tables is not None:
            node_energy = self._tabulated_layers(h, species_idx, edge_sh, lengths, edge_index, tables)
        else:
            node_energy = torch.zeros_like(positions[:, 0])  # (N,)
            for inter, prod, gate, sc, readout in zip(
                self.interactions, self.products, self.gates, self.self_connections, self.readouts
            ):
                a = inter(h, edge_sh, edge_radial, edge_index, fused, pairs, chunk)  # (N, irreps_a.dim)
                h = gate(prod(a, species_idx, fused) + sc(h, species_idx))  # (N, irreps_out.dim)
                node_energy = node_energy + readout(h)  # (N,)
        if self.isolated_e0:  # an atom without neighbours has zero interaction energy
            coordination = scatter_sum(envelope, recv, positions.shape[0])  # smooth, (N,)
            node_energy = ((node_energy - self.one_body_energies(positions)[species_idx])
                           * self.element_scale[species_idx]
                           + self.element_shift[species_idx] * (1.0 - torch.exp(-coordination)))
        else:
            node_energy = node_energy * self.element_scale[species_idx] + self.element_shift[species_idx]
        return node_energy + self.atomic_energies[species_idx] if include_e0 else node_energy  # (N,)

    def _tabulated_layers(self, h, species_idx, edge_sh, lengths, edge_index, tables) -> torch.Tensor:
        """The layers on the tabulated path: summed readout energies (N,) before scale and shift.

        Between two edge products every step is node-wise (channel mix, product basis, self-connection, gate,
        readout, the next layer's ``linear_up``), so it runs in blocks of :attr:`node_chunk_size` atoms: each op
        then works on arrays that stay in cache (on a 100k-atom box an (N, 21, 32) array is 260 MB and every
        node-wise pass went to memory), forward and backward (autograd runs a block's chain before the next's).
        The same ops on the same rows: the result does not depend on the block size."""
        n = h.shape[0]
        size = getattr(self, "node_chunk_size", None)  # (models pickled before it existed: none)
        size = n if size is None or size <= 0 or size >= n else int(size)
        layers = list(zip(self.interactions, self.products, self.gates, self.self_connections, self.readouts))
        x = layers[0][0].channels_in(h, const_feats=True)  # the species embedding: no position dependence
        node_energy = None
        for layer, (inter, prod, gate, sc, readout) in enumerate(layers):
            agg = inter.aggregate_tabulated(x, edge_sh, lengths, edge_index, tables[layer], n)  # (N, K, mul)
            nxt = layers[layer + 1][0] if layer + 1 < len(layers) else None
            parts = [(agg, h, species_idx)] if size == n else zip(agg.split(size), h.split(size),
                                                                  species_idx.split(size))
            hs, es, xs = [], [], []
            for agg_c, h_c, idx_c in parts:
                a = inter.linear.forward_channels(agg_c)  # (C, irreps_a.dim)
                h_c = gate(prod(a, idx_c, True) + sc(h_c, idx_c))  # (C, irreps_out.dim)
                hs.append(h_c)
                es.append(readout(h_c))
                if nxt is not None:
                    xs.append(nxt.channels_in(h_c))
            h = hs[0] if len(hs) == 1 else torch.cat(hs)
            e = es[0] if len(es) == 1 else torch.cat(es)
            node_energy = e if node_energy is None else node_energy + e
            if nxt is not None:
                x = xs[0] if len(xs) == 1 else torch.cat(xs)
        return node_energy

    def _pruned_node_energies(self, positions, node_attrs, species_idx, edge_index, cell_shifts, edge_cell,
                              fused: bool, include_e0: bool, chunk: int | None, receivers: list[int],
                              tables: list | None = None) -> torch.Tensor:
        """:meth:`node_energies` with ``receivers`` (layer by layer fewer atoms; see there)."""
        recv = edge_index[1]
        lengths, edge_sh, envelope = self._edge_features(positions, edge_index, cell_shifts, edge_cell,
                                                         tables is not None)
        edge_radial = self.radial(lengths) if tables is None else None  # (E, num_bessel)
        pairs = (edge_pairs(edge_index, cell_shifts) if fused and fused_available(positions) and tables is None
                 else None)
        h = self.embedding(node_attrs)  # (N, mul)
        node_energy = torch.zeros_like(positions[:, 0])  # (N,)
        for layer, (m, inter, prod, gate, sc, readout) in enumerate(zip(
            receivers, self.interactions, self.products, self.gates, self.self_connections, self.readouts
        )):
            bound = torch.tensor(int(m), dtype=recv.dtype, device=recv.device)
            e = int(torch.searchsorted(recv, bound))  # edges into atoms < m (edges sorted by receiver)
            if tables is not None:
                a = inter.forward_tabulated(h, edge_sh[:e], lengths[:e], edge_index[:, :e], tables[layer], n_out=m,
                                            const_feats=layer == 0)
            else:
                layer_pairs = None
                if pairs is not None:  # the weight rows the prefix uses, renumbered
                    rows, widx = torch.unique(pairs[1][:e], return_inverse=True)
                    layer_pairs = (pairs[0][rows], widx)
                a = inter(h, edge_sh[:e], edge_radial[:e], edge_index[:, :e], fused, layer_pairs, chunk,
                          n_out=m)  # (m, irreps_a.dim)
            idx = species_idx[:m]
            h = gate(prod(a, idx, fused) + sc(h[:m], idx))  # (m, irreps_out.dim)
            node_energy = node_energy[:m] + readout(h)  # (m,)
        m = int(receivers[-1])
        idx = species_idx[:m]
        if self.isolated_e0:
            coordination = scatter_sum(envelope, recv, positions.shape[0])[:m]
            node_energy = ((node_energy - self.one_body_energies(positions)[idx]) * self.element_scale[idx]
                           + self.element_shift[idx] * (1.0 - torch.exp(-coordination)))
        else:
            node_energy = node_energy * self.element_scale[idx] + self.element_shift[idx]
        return node_energy + self.atomic_energies[idx] if include_e0 else node_energy  # (m,)

    def _edge_features(self, positions, edge_index, cell_shifts, edge_cell, inference: bool):
        """Edge lengths (E,), spherical harmonics (E, sh.dim) and cutoff envelope (E,) (what the coordination of
        ``isolated_e0`` sums; None without it). ``inference`` (the tabulated path) on the CPU with one cell for all
        edges (a single structure: ``edge_cell`` an expanded (3, 3)) uses the fused kernel
        :func:`~compscope.nn.edge_geometry` (same values, one pass over edges forward and one backward); otherwise
        torch ops."""
        n_edges = edge_index.shape[1]
        lmax = self.irreps_sh.lmax
        if (inference and n_edges > 0 and edge_cell.stride(0) == 0 and geometry_supported(lmax)
                and fused_available(positions, cell_shifts)):
            cut = self.radial.cutoff
            lengths, sh, env = edge_geometry(positions, edge_cell[0], cell_shifts, edge_index, lmax,
                                             cut.r_max if self.isolated_e0 else 0.0, cut.p)
            return lengths, sh, (env if self.isolated_e0 else None)
        send, recv = edge_index[0], edge_index[1]
        offsets = torch.einsum("ei,eij->ej", cell_shifts, edge_cell)
        vectors = positions[recv] - positions[send] + offsets  # (E, 3)
        lengths = vectors.norm(dim=-1)  # (E,)
        return lengths, self.sh(vectors), (self.radial.cutoff(lengths) if self.isolated_e0 else None)

    def owned_energies(self, graph: AtomicGraph, positions: torch.Tensor, receivers: list[int]) -> torch.Tensor:
        """Per-atom energies (receivers[-1],) of a blocked graph's leading atoms, E0s included in float64
        (autograd through ``positions``); see :meth:`node_energies` for ``receivers``."""
        idx = self.species_index(graph.atomic_numbers)
        node_attrs = torch.nn.functional.one_hot(idx, len(self.species)).to(self.atomic_energies.dtype)
        edge_cell = graph.cell[0].to(positions.dtype).expand(graph.edge_index.shape[1], 3, 3)
        e = self.node_energies(positions, node_attrs, idx, graph.edge_index, graph.cell_shifts.to(positions.dtype),
                               edge_cell, fused=self.fused_kernels, include_e0=False, chunk=self.edge_chunk_size,
                               receivers=receivers, tabulated=True)
        return e.to(torch.float64) + self._e0_64[idx[: e.shape[0]]]

    def radial_tables(self, dtype: torch.dtype) -> list:
        """One spline table per interaction of its radial weights (:attr:`radial_table_intervals` intervals), built
        from the current weights in float64 and kept until the weights, the dtype or the intervals change."""
        n = int(self.radial_table_intervals or 0)
        if n < 1:
            raise ValueError(f"radial_table_intervals must be a positive number of intervals, got "
                             f"{self.radial_table_intervals}")
        tabs = self._radial_tables
        if (tabs is None or len(tabs) != len(self.interactions)
                or any(t.n_intervals != n or not t.matches(self.radial, inter.radial_mlp, dtype)
                       for t, inter in zip(tabs, self.interactions))):
            tabs = [inter.radial_table(self.radial, self.cutoff, n, dtype) for inter in self.interactions]
            self._radial_tables = tabs
        return tabs

    def one_body_energies(self, like: torch.Tensor) -> torch.Tensor:
        """What the layers give one atom of each species without neighbours, before scale and E0: (n_el,) in
        ``like``'s dtype and device. Run through the same modules with zero edges, so it stays exact as the
        weights train (and traces into a compiled model)."""
        n_el = len(self.species)
        attrs = torch.eye(n_el, dtype=like.dtype, device=like.device)
        idx = torch.arange(n_el, device=like.device)
        no_edges = torch.zeros(2, 0, dtype=torch.long, device=like.device)
        sh = like.new_zeros(0, self.irreps_sh.dim)
        radial = like.new_zeros(0, self.radial.out_dim)
        h = self.embedding(attrs)
        energy = like.new_zeros(n_el)
        for inter, prod, gate, sc, readout in zip(
            self.interactions, self.products, self.gates, self.self_connections, self.readouts
        ):
            a = inter(h, sh, radial, no_edges, False, None)
            h = gate(prod(a, idx, False) + sc(h, idx))
            energy = energy + readout(h)
        return energy

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        buf = self.atomic_energies
        self._e0_64 = self._e0_64.to(device=buf.device)  # stays float64 whatever the model dtype
        # a float32 buffer cast up to float64 keeps float32's rounding of the E0s (5e-5 eV on -2041.8): take the
        # float64 master instead, so a float64 model (and its compiled export, which adds the buffer) is exact
        if buf.dtype == torch.float64 and torch.equal(self._e0_64.float(), buf.float()):
            self.atomic_energies = self._e0_64.clone()
        return out

    def forward(
        self,
        graph: AtomicGraph,
        compute_forces: bool = True,
        compute_stress: bool = False,
        training: bool = False,
    ) -> dict[str, torch.Tensor]:
        idx = self.species_index(graph.atomic_numbers)
        node_attrs = torch.nn.functional.one_hot(idx, len(self.species)).to(self.atomic_energies.dtype)  # (N, n_el)
        out = potential_outputs(
            lambda pos, edge_cell: self.node_energies(pos, node_attrs, idx, graph.edge_index, graph.cell_shifts,
                                                      edge_cell, fused=self.fused_kernels, include_e0=False,
                                                      chunk=None if training else self.edge_chunk_size,
                                                      tabulated=not training),
            graph, compute_forces, compute_stress, training,
        )
        # E0s are constants (no force, no stress): added after autograd, the total in float64 (G,)
        e0 = scatter_sum(self._e0_64[idx], graph.batch, graph.num_graphs)
        out[K.ENERGY] = out[K.ENERGY].to(torch.float64) + e0
        out[K.NODE_ENERGY] = out[K.NODE_ENERGY] + self.atomic_energies[idx]
        return out


def _sync_e0(module: EquivariantPotential, incompatible_keys) -> None:
    """After ``load_state_dict``: take the loaded E0s as the float64 master unless they are the master's own
    values (rounded to the buffer's dtype), so a float32 checkpoint does not round the exact master."""
    buf = module.atomic_energies.detach().cpu()
    # compare at float32: a buffer built in float32 and cast up still carries the master's values
    if not torch.equal(module._e0_64.cpu().float(), buf.float()):
        module._e0_64 = buf.to(torch.float64).to(module.atomic_energies.device)
