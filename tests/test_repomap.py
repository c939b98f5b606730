"""docs/repomap.md stays current: every module of src/compscope is listed (regenerate with scripts/repomap.py)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_module_in_repomap():
    text = (ROOT / "docs" / "repomap.md").read_text()
    missing = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "src" / "compscope").rglob("*.py"))
               if f"`{p.relative_to(ROOT)}`" not in text]
    assert not missing, f"run `python scripts/repomap.py`; missing from docs/repomap.md: {missing}"
