"""Substructure screens beyond the pattern fingerprint: counts a query needs at least as many of in a hit.

A substructure match maps query atoms one-to-one onto target atoms, so a hit has at least as many atoms as
the query, at least as many atoms of each element the query's atoms require, and, because the image of a cycle
is a cycle, at least as many ring atoms and ring bonds as the query's cycles hold. The cyclic bonds of the query
fall into connected ring systems; each maps into one ring system of the hit with at least as many atoms and at
least the same cycle rank (bonds - atoms + 1), so the hit's largest ring system is at least as large in both.
The same holds for the cyclic bonds between atoms that must be aromatic (``aromatic_system_atoms``), which is
what screens aromatic ring systems written as SMARTS (fragments that do not parse as SMILES): their implicit
"single or aromatic" bonds make RDKit's pattern fingerprint of the query nearly empty.
These bounds are exact (never reject a hit) and cost a 19-byte row (``molfeat``, built with the index) per
molecule; they reject the many molecules whose pattern fingerprint contains a rare ring system's bits because the
same paths occur elsewhere in the molecule.

Element requirements of SMARTS atoms are read from RDKit's query description: an atom requires element Z when
its query is ``AtomType``/``AtomAtomicNum`` Z or an AND of conditions containing one; an aromatic atom when the
query is ``AtomType`` of an aromatic type or ``AtomIsAromatic``. Anything else (OR, negation, recursion) requires
nothing, which only weakens the screen. Recursive SMARTS sub-patterns are not part of the query graph and
add no requirement.
"""

from __future__ import annotations

import numpy as np

from ._molecules import ELEMENT_COLUMN, MOLFEAT, OTHER_COLUMN, ring_systems


def _atom_requirement(atom) -> tuple[int, bool]:
    """(atomic number or 0, requires aromatic) of one query atom."""
    if not atom.HasQuery():  # an atom of a SMILES query: its element (dummy atoms match anything)
        return atom.GetAtomicNum(), False
    lines = atom.DescribeQuery().splitlines()
    z, arom = 0, False

    def leaf(text: str) -> None:
        nonlocal z, arom
        parts = text.split()
        if len(parts) == 4 and parts[2] == "=" and parts[3] == "val":
            if parts[0] == "AtomType":
                v = int(parts[1])
                z, arom = v % 1000, arom or v >= 1000
            elif parts[0] == "AtomAtomicNum":
                z = int(parts[1])
            elif parts[0] == "AtomIsAromatic" and parts[1] == "1":
                arom = True

    if len(lines) == 1:
        leaf(lines[0])
        return z, arom
    # only a chain of (un-negated) ANDs: every child at any depth under ANDs must hold
    depth_ok = {0: lines[0].strip() == "AtomAnd"}
    for ln in lines[1:]:
        d = (len(ln) - len(ln.lstrip())) // 2
        if not depth_ok.get(d - 1, False):
            depth_ok[d] = False
            continue
        text = ln.strip()
        depth_ok[d] = text == "AtomAnd"
        if text != "AtomAnd":
            leaf(text)
    return z, arom


def _bridges(n: int, edges: list[tuple[int, int]]) -> set[int]:
    """Indices of the bridge edges (edges on no cycle) of a multigraph (iterative Tarjan)."""
    adj: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    for k, (a, b) in enumerate(edges):
        adj[a].append((b, k))
        adj[b].append((a, k))
    disc, low, out, t = [-1] * n, [0] * n, set(), 0
    for root in range(n):
        if disc[root] != -1:
            continue
        disc[root] = low[root] = t
        t += 1
        stack = [(root, -1, iter(adj[root]))]
        while stack:
            v, pe, it = stack[-1]
            for w, k in it:
                if k == pe:
                    continue
                if disc[w] == -1:
                    disc[w] = low[w] = t
                    t += 1
                    stack.append((w, k, iter(adj[w])))
                    break
                low[v] = min(low[v], disc[w])
            else:
                stack.pop()
                if stack:
                    u = stack[-1][0]
                    low[u] = min(low[u], low[v])
                    if low[v] > disc[u]:
                        out.add(pe)
    return out


def query_requirements(qmol, names: list[str]) -> np.ndarray:
    """Lower bounds (F,) uint8 on the ``molfeat`` columns ``names`` (the index header's) for any hit of ``qmol``."""
    req = [0] * len(MOLFEAT)
    n = qmol.GetNumAtoms()
    edges = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in qmol.GetBonds()]
    br = _bridges(n, edges)
    cyc = [e for k, e in enumerate(edges) if k not in br]
    arom_atoms = set()
    for a in qmol.GetAtoms():
        z, arom = _atom_requirement(a)
        if z > 0:
            req[ELEMENT_COLUMN.get(z, OTHER_COLUMN)] += 1
        if arom:
            req[4] += 1
            req[18] += z == 7
            arom_atoms.add(a.GetIdx())
    req[1] = n
    req[2] = len({i for e in cyc for i in e})
    req[3] = len(cyc)
    systems = ring_systems(n, cyc)
    if systems:
        req[5] = max(a for a, _ in systems)
        req[6] = max(r for _, r in systems)
    arom_cyc = [e for e in cyc if e[0] in arom_atoms and e[1] in arom_atoms]
    if arom_cyc:
        req[17] = max(a for a, _ in ring_systems(n, arom_cyc))
    req[0] = 0  # flags are not a screen
    col = {name: i for i, name in enumerate(MOLFEAT)}
    return np.asarray([min(255, req[col[nm]]) if nm in col else 0 for nm in names], dtype=np.uint8)
