"""``python -m compscope.integrations.lammps SPEC.json``: the per-rank program of an MPI run (see ``_worker``)."""

import sys

from ._worker import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
