"""Shared fixtures of the CG tests: the committed implicit-solvent reference slice, mapped once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

REF = Path(__file__).parents[1] / "fixtures" / "cg" / "ala2_obc_4x100.h5"


@pytest.fixture(scope="session")
def cg_file(tmp_path_factory) -> Path:
    from compscope.cg import map_reference

    out = tmp_path_factory.mktemp("cg") / "cg.h5"
    map_reference(REF, "backbone", out)
    return out
