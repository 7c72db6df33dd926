"""Reports name the suite's methods that did not run, and what running them needs (issue 15.3)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from benchmark.reporting.coverage import device_methods, not_run_lines
from benchmark.reporting.matching import write_suite_reports
from benchmark.reporting.results import METRICS
from benchmark.store.records import RunRecord

PRESET = ["clip", "item2vec", "pgg", "popularity", "random"]


def _store(results: Path, method: str, column: str | None, scale: str) -> None:
    metrics = {g: {**{m: 1.0 for m in METRICS}, "n": 10} for g in ("overlapped", "unseen", "all")}
    metrics["head"] = {"HR@50": 1.0}
    metrics["tail"] = {"HR@50": 0.5}
    record = RunRecord(run_key=f"k-{method}", suite="xmarket-matching", method=method, display=column or method,
                       paper_column=column, seed=0, scale=scale, status="done", metrics=metrics,
                       manifest_hash="m" * 64,
                       dataset={"name": "xmarket-sim", "synthetic": True, "label": f"xmarket-sim (SYNTHETIC, {scale})",
                                "domain_interactions": {"Books": 10, "Electronics": 5}})
    folder = results / "xmarket-matching" / record.run_key
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps(asdict(record)))


def test_all_methods_ran_gives_no_section() -> None:
    assert not_run_lines("s", ["a", "b"], {"a", "b", "c"}, "paper", []) == []


def test_paper_scale_lists_the_missing_methods_in_suite_order_and_the_way_to_run_them() -> None:
    lines = "\n".join(not_run_lines("s", ["a", "b", "c", "d"], ["c", "a"], "paper", ["d"]))
    assert "`b`, `d`" in lines and "`a`" not in lines and "2 method(s)" in lines
    assert "would take days" in lines and "--scale paper" in lines
    assert "--executor ray" in lines and "RAY_ADDRESS" in lines and "--set <method>.device=cuda" in lines
    assert "methods with a `device` key: `d`" in lines


def test_other_scale_says_the_run_was_restricted_and_when_no_method_has_a_device_key() -> None:
    lines = "\n".join(not_run_lines("s", ["a", "b"], ["a"], "small", []))
    assert "`--methods` restricted the run" in lines and "days" not in lines
    assert "none of these methods has a `device` key" in lines


def test_device_methods_reads_each_methods_config() -> None:
    # pgg's config.yaml has a device key; item2vec (gensim) and popularity have none
    assert device_methods(["pgg", "item2vec", "popularity", "no-such-method"]) == ["pgg"]


def test_paper_preset_report_states_what_did_not_run(tmp_path: Path) -> None:
    results = tmp_path / "results"
    for method, column in zip(PRESET, ["CLIP", "Item2Vec", "PGG", None, None], strict=True):
        _store(results, method, column, "paper")
    text = write_suite_reports("xmarket-matching", results, tmp_path / "reports")
    section = text.split("### Not run in this report", 1)[1].split("###", 1)[0]
    for method in ("uniembedding", "unisrec", "transrec", "sasrec", "uae", "cb2cf"):
        assert f"`{method}`" in section
    for method in PRESET:
        assert f"`{method}`" not in section.split("To run them", 1)[0]
    assert "12 method(s)" in section and "--executor ray" in section and "device=cuda" in section
    assert (tmp_path / "reports" / "xmarket-matching" / "xmarket-sim-paper-subset" / "report.md").is_file()
