"""How much the data convention alone moves the accumulated error: block averages vs the authors' 5-point filter.

For each -authors equation and resolution, on the same test trajectories: the accumulated error between the two
codings of the reference (``coarsen(u200, nx, "block")`` vs ``"box5"``), and our WENO5 solver (started from exact
cell averages, as in the MP-PDE benchmark) scored against each. Writes the headline
``benchmarks/results/pde_coarsening_gap.json`` (``--note`` adds to its ``notes``).

    python -m benchmarks.pde_coarsening_gap
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if not __package__:  # run as `python benchmarks/<name>.py`: put the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import write_result  # noqa: E402
from benchmarks.pde_mp_pde import N0, weno_inputs  # noqa: E402
from compscope.pde import (  # noqa: E402
    accumulated_error,
    cell_key,
    coarsen,
    generate,
    get_equation,
    load_split,
    weno_solve_batch,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--equations", default="E1-authors,E2-authors,E3-authors")
    ap.add_argument("--n-test", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=None)
    ap.add_argument("--note", action="append", default=[],
                    help="free text added to the JSON's notes (repeatable)")
    a = ap.parse_args()
    cells = {}
    for name in a.equations.split(","):
        eq = get_equation(name)
        path = generate(eq.name, "test", a.n_test, a.seed, a.cache, progress=False)
        fine = load_split(path, eq.nx_ref)
        for nx in eq.resolutions:
            block, box5 = coarsen(fine["u"], nx, "block"), coarsen(fine["u"], nx, "box5")
            u0, args = weno_inputs(eq, nx, fine["params"])
            weno = weno_solve_batch(u0, eq.times, *args)
            cells[cell_key(eq.name, nx)] = {
                "block_vs_box5": accumulated_error(box5, block, N0),
                "WENO5_vs_block": accumulated_error(weno, block, N0),
                "WENO5_vs_box5": accumulated_error(weno, box5, N0),
            }
            print(cell_key(eq.name, nx), cells[cell_key(eq.name, nx)], flush=True)
    print(write_result("pde_coarsening_gap", {"n_test": a.n_test, "given_steps": N0, "cells": cells}, seed=a.seed,
                       notes=a.note))


if __name__ == "__main__":
    main()
