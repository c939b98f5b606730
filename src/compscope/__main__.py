"""``python -m compscope`` is the same as the ``compscope`` command."""

from compscope.cli import main

main()
