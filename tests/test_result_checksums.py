"""Result files are written with their checksums and verified on read (every task's folders)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.errors import BenchmarkError
from benchmark.fsutil import CHECKSUMS_FILE, atomic_write_dir, load_result_array, verify_result_file
from benchmark.grid.plan import plan
from benchmark.tasks.matching.runner import execute_run


def _write(folder):
    def write(tmp):
        np.save(tmp / "ranks.npy", np.arange(5, dtype=np.int32))
        (tmp / "result.json").write_text("{}")

    atomic_write_dir(folder, write, checksums=True)


def test_a_result_folder_lists_its_files_checksums_but_not_its_record(tmp_path):
    _write(tmp_path / "k")
    lines = (tmp_path / "k" / CHECKSUMS_FILE).read_text().splitlines()
    assert [line.split("  ")[1] for line in lines] == ["ranks.npy"]  # result.json is rewritten by tracking
    assert load_result_array(tmp_path / "k" / "ranks.npy").tolist() == [0, 1, 2, 3, 4]


def test_an_edited_result_file_is_refused_in_one_line(tmp_path):
    _write(tmp_path / "k")
    path = tmp_path / "k" / "ranks.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last rank
    path.write_bytes(bytes(data))
    with pytest.raises(BenchmarkError, match="does not match its checksum") as err:
        load_result_array(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_folders_written_before_checksums_read_as_before(tmp_path):
    (tmp_path / "old").mkdir()
    np.save(tmp_path / "old" / "ranks.npy", np.ones(3, dtype=np.int32))
    verify_result_file(tmp_path / "old" / "ranks.npy")  # no SHA256SUMS: nothing to verify against
    assert load_result_array(tmp_path / "old" / "ranks.npy").sum() == 3


def test_a_matching_run_stores_checksums_of_its_ranks_and_embeddings(tiny_data_dir, tmp_path):
    from benchmark.inputs import prepare_inputs

    (cfg,) = plan("xmarket-matching", scale="tiny", methods=["popularity"])
    inputs = prepare_inputs(cfg.dataset, cfg.split, cfg.features, tiny_data_dir, cfg.scale, progress=False)
    record = execute_run(cfg, inputs, tmp_path, tracker=None, progress=False)
    listed = {line.split("  ")[1] for line in
              (tmp_path / "xmarket-matching" / record.run_key / CHECKSUMS_FILE).read_text().splitlines()}
    assert {"ranks.npy", "next_item_ranks.npy", "item_embeddings.npy", "tracking.json"} <= listed
    assert "result.json" not in listed
