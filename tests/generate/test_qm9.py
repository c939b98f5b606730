"""QM9 conversion, EDM's splits and units."""

import numpy as np
import pytest

from compscope.generate import PROPERTIES, check_property


def test_size_and_split_sizes(qm9, splits):
    assert len(qm9) == 130_831
    assert [len(splits[k]) for k in ("train", "valid", "test")] == [100_000, 17_748, 13_083]
    allrows = np.concatenate([splits["train"], splits["valid"], splits["test"]])
    assert len(np.unique(allrows)) == 130_831
    assert set(splits["first_half"]).isdisjoint(splits["second_half"])
    assert len(splits["first_half"]) == len(splits["second_half"]) == 50_000


def test_train_split_reproduces_edm_size_histogram(qm9, splits):
    # EDM's configs/datasets_config.py lists these molecule-size counts for its QM9 train split;
    # any other permutation would give different counts.
    n, c = np.unique(qm9.num_atoms[splits["train"]].numpy(), return_counts=True)
    hist = dict(zip(n.tolist(), c.tolist()))
    expected = {22: 3393, 17: 13025, 23: 4848, 21: 9970, 19: 13832, 20: 9482, 16: 10644, 13: 3060,
                15: 7796, 25: 1506, 18: 13364, 12: 1689, 11: 807, 24: 539, 14: 5136, 8: 49, 27: 266,
                4: 4, 10: 362, 9: 124, 26: 48, 29: 25, 7: 16, 6: 9, 5: 5, 3: 1}
    assert hist == expected


def test_units_as_edm_reports(qm9):
    # molecule 1 is methane: alpha 13.21 Bohr^3, HOMO -0.3877 Ha, LUMO 0.1171 Ha, gap 0.5048 Ha
    p = qm9.properties
    assert qm9.smiles[0] == "C" and int(qm9.gdb_index[0]) == 0
    assert p["alpha"][0].item() == pytest.approx(13.21)
    assert p["homo"][0].item() == pytest.approx(-0.3877 * 27211.4)
    assert p["gap"][0].item() == pytest.approx(0.5048 * 27211.4)
    assert p["mu"][0].item() == pytest.approx(0.0)
    assert p["Cv"][0].item() == pytest.approx(6.469)
    gap = (p["lumo"] - p["homo"] - p["gap"]).abs().max().item()
    assert gap < 2.73  # meV: gap = LUMO - HOMO up to the release's 1e-4 Ha rounding (2.72 meV)
    assert {"alpha", "gap", "homo", "lumo", "mu", "Cv"} <= set(PROPERTIES)


def test_unknown_property_is_refused_with_the_valid_names():
    with pytest.raises(ValueError, match="unknown QM9 property 'polarisability'.*alpha"):
        check_property("polarisability")
