"""Cost of each per-molecule feature of a search-index build (RDKit calls), in CPU-µs per molecule.

An index build is a loop of RDKit calls per molecule; this measures each one on the first ``--n`` MOSES train
SMILES (single core, the same calls ``compscope.search._molecules.process_chunk`` makes) and projects the
1M-molecule build time on 2 cores for the feature sets of ``benchmarks/search_moses.py``:
``simonly`` (what FPSim2 builds: parse + Morgan), ``subs`` (+ canonical SMILES + pattern fingerprint) and
``full`` (+ InChIKey + properties). FPSim2's own parse + fingerprint is timed the same way for reference.

Usage:
    COMPSCOPE_DATA=/work/shared/data python benchmarks/search_build_features.py [--n 3000]
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import sys
import time
from pathlib import Path

if not __package__:  # run as `python benchmarks/<name>.py`: put the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import write_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=3000)
    args = ap.parse_args()

    from rdkit import Chem, RDLogger
    from rdkit.Chem import rdMolDescriptors as D

    from compscope.data import dataset_path
    from compscope.search import Fingerprinter, FingerprintSpec

    RDLogger.DisableLog("rdApp.*")
    with gzip.open(dataset_path("moses", "train.csv.gz"), "rt") as fh:
        smiles = [line.strip().split(",")[0] for line in itertools.islice(fh, 1, args.n + 1)]
    t = time.thread_time()
    mols = [Chem.MolFromSmiles(s) for s in smiles]
    cost = {"parse": (time.thread_time() - t) / len(mols) * 1e6}
    fper = Fingerprinter(FingerprintSpec())
    calls = {
        "canonical_smiles": Chem.MolToSmiles,
        "morgan_r2_2048": lambda m: fper.packed([m]),
        "pattern_fp_2048": lambda m: Chem.PatternFingerprint(m, 2048),
        "inchikey": Chem.MolToInchiKey,
        "prop_mw": D._CalcMolWt,
        "prop_logp_crippen": D.CalcCrippenDescriptors,
        "prop_hba": D.CalcNumHBA,
        "prop_hbd": D.CalcNumHBD,
        "prop_tpsa": D.CalcTPSA,
        "prop_rotb": D.CalcNumRotatableBonds,
        "prop_rings": D.CalcNumRings,
    }
    for name, fn in calls.items():
        t = time.thread_time()
        for m in mols:
            fn(m)
        cost[name] = (time.thread_time() - t) / len(mols) * 1e6
    props = sum(v for k, v in cost.items() if k.startswith("prop_"))
    sets = {
        "simonly": cost["parse"] + cost["morgan_r2_2048"],
        "subs": cost["parse"] + cost["morgan_r2_2048"] + cost["canonical_smiles"] + cost["pattern_fp_2048"],
    }
    sets["full"] = sets["subs"] + cost["inchikey"] + props
    projected = {k: {"cpu_us_per_molecule": v, "projected_1M_s_on_2_cores": v / 2}  # v CPU-s per 1M
                 for k, v in sets.items()}
    for k, v in cost.items():
        print(f"{k:20s} {v:8.1f} µs/mol")
    for k, v in projected.items():
        us, s = v["cpu_us_per_molecule"], v["projected_1M_s_on_2_cores"]
        print(f"{k:8s} {us:7.1f} µs/mol -> {s:6.0f} s per 1M on 2 cores")
    write_result("search_build_features", {"n_molecules": len(mols), "cpu_us_per_molecule": cost,
                                           "feature_sets": projected, "target_s_1M_2_cores": 120})


if __name__ == "__main__":
    main()
