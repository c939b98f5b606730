#!/usr/bin/env bash
# The project's test command (README): the whole suite, 2 workers' worth of CPU, fails if nothing ran.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pytest -q --durations=25 "$@"
