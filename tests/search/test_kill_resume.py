"""The multi-process `compscope search build` killed with SIGKILL (workers included) and resumed writes the same
index, byte for byte, as an uninterrupted build."""

from __future__ import annotations

from compscope.testing import cli_command, file_appears, kill_and_resume

from ._data import assert_same_index, library_records


def test_search_build_killed_and_resumed_equals_uninterrupted(tmp_path):
    recs = library_records()
    lines = [f"{s} {i}\n" for s, i in recs]
    for k in (5, 777, 2100):  # invalid records in several chunks: their report must survive the resume too
        lines.insert(k, f"C1CC(not_smiles bad{k}\n")
    src = tmp_path / "lib.smi"
    src.write_text("".join(lines))

    def cmd(out):
        return cli_command("search", "build", src, "--out", out, "--jobs", "2", "--chunk-size", "60")

    run, ref = tmp_path / "run.csi", tmp_path / "ref.csi"
    parts = tmp_path / "run.csi.parts"
    res = kill_and_resume(cmd(run), reference_cmd=cmd(ref), kill_when=file_appears(parts / "chunk_*.npz", 8),
                          after_kill=lambda: len(list(parts.glob("chunk_*.npz"))))
    n_chunks = -(-len(lines) // 60)
    assert 8 <= res.extra["after_kill"] < n_chunks, res.extra["after_kill"]
    assert "3000 molecules" in res.resumed.output and "3 invalid" in res.resumed.output
    assert not parts.exists(), "the checkpoint is removed once the build succeeds"
    assert_same_index(run, ref)
