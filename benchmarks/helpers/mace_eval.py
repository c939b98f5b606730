"""Runs inside the mace-torch virtualenv: test-set errors, parameter count and per-frame inference time (JSON)."""

import json
import sys
import time

import numpy as np
import torch
from ase.io import read
from mace.calculators import MACECalculator

model_path, test_file, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(threads)
frames = read(test_file, ":")
calc = MACECalculator(model_paths=model_path, device="cpu", default_dtype="float64")
de, df, zs = [], [], []
for a in frames:
    ref_e, ref_f = a.info["REF_energy"], a.arrays["REF_forces"]
    b = a.copy()
    b.calc = calc
    de.append((b.get_potential_energy() - ref_e) / len(b))
    df.append(b.get_forces() - ref_f)
    zs.append(a.numbers)
de, df, zs = np.array(de), np.concatenate(df), np.concatenate(zs)
per_element = {}  # force errors of each element's atoms, as compscope.forcefield.error_table reports them
for z in np.unique(zs):
    d = df[zs == z]
    per_element[a.get_chemical_symbols()[list(a.numbers).index(z)]] = {
        "atoms": int(len(d)), "forces_mae_meV_A": 1000 * float(np.abs(d).mean()),
        "forces_rmse_meV_A": 1000 * float(np.sqrt((d**2).mean()))}
b = frames[0].copy()
b.calc = calc
b.get_forces()
t0 = time.perf_counter()
n = 50
for i in range(n):
    b.positions[0, 0] += 1e-4 * (-1) ** i  # force a recalculation
    b.get_forces()
ms = (time.perf_counter() - t0) / n * 1000
model = torch.load(model_path, map_location="cpu", weights_only=False)
print(json.dumps({
    "energy_mae_meV_atom": 1000 * float(np.abs(de).mean()),
    "energy_rmse_meV_atom": 1000 * float(np.sqrt((de**2).mean())),
    "forces_mae_meV_A": 1000 * float(np.abs(df).mean()),
    "forces_rmse_meV_A": 1000 * float(np.sqrt((df**2).mean())),
    "params": int(sum(p.numel() for p in model.parameters())),
    "ms_per_frame_ase": ms,
    "per_element": per_element,
}))
