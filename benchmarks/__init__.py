"""compscope's benchmarks: scripts that run a capability against its anchor tool and write result JSONs.

Each ``benchmarks/<name>.py`` runs as ``python benchmarks/<name>.py`` or ``python -m benchmarks.<name>`` and imports
as ``benchmarks.<name>`` without running anything (its work is in ``main()``). Results: ``benchmarks/results/``
(one headline JSON per benchmark cell; tuning sweeps in ``results/sweeps/``), described in
``benchmarks/results/README.md``. The README's result tables are rendered from those JSONs by
``python -m benchmarks.readme`` (``--check`` compares instead of writing).
"""

__all__: list[str] = []
