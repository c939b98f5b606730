"""benchmarks/results holds one headline result per cell, each listed in its README index (issue 24, "Also")."""

import re

from benchmarks._common import RESULTS


def test_every_headline_file_is_indexed_and_every_folder_described():
    index = (RESULTS / "README.md").read_text()
    listed = set(re.findall(r"`([\w.-]+\.json)`", index))
    stems = sorted((name[:-5] for name in listed), key=len, reverse=True)
    for path in sorted(RESULTS.iterdir()):
        if path.name == "README.md" or path.name.startswith(".") or path.suffix == ".lock":
            continue
        if path.is_dir():
            assert f"## `{path.name}/`" in index, f"folder {path.name}/ is not described in results/README.md"
        elif path.suffix == ".json":
            assert path.name in listed, f"{path.name} is not in the index of results/README.md"
        else:  # a plot belongs to the JSON whose stem starts its name
            assert any(path.name.startswith(stem) for stem in stems), f"{path.name} belongs to no indexed JSON"
