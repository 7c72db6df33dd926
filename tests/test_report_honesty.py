"""Reports say what their data is, show no paper numbers off the paper's XMarket, name skipped methods
plainly, and show per group how many cases there are and how noisy the headline metric is."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from benchmark.evaluation.significance import bootstrap_ci, bootstrap_ci_hits
from benchmark.reporting import noise, tables
from benchmark.reporting.paper_data import header_lines, on_paper_data
from benchmark.reporting.results import MethodResult, aggregate
from benchmark.store.records import RunRecord

PAPER_CELL = re.compile(r"\d\.\d{3} \(\d+\.\d{3}\)")  # "8.235 (4.541)": ours (paper)


def result(method: str, column: str | None, hr50: float, n: int = 179, status: str = "done",
           display: str | None = None, reason: str = "") -> MethodResult:
    metrics = {g: {"n": n, "HR@10": hr50 / 2, "HR@50": hr50, "MRR@10": 1.0, "MRR@50": 1.0, "NDCG@10": 1.0,
                   "NDCG@50": 1.0} for g in ("all", "overlapped", "unseen")}
    metrics["overlapped/head"] = {"n": n, "HR@50": hr50}  # crossed groups stay out of the noise table
    record = RunRecord(run_key=method, suite="s", method=method, display=display or column or method,
                       paper_column=column, seed=0, scale="tiny", status=status, reason=reason,
                       metrics=metrics if status == "done" else {})
    return aggregate([record])[0]


# --- the paper's numbers only beside the paper's data -----------------------------------------------


@pytest.mark.parametrize("paper", [True, False])
def test_table1_shows_the_papers_numbers_only_on_the_papers_data(paper):
    results = [result("item2vec", "Item2Vec", 8.235)]
    text = tables.table1_markdown(results, "Table 1", paper=paper)
    assert bool(PAPER_CELL.search(text)) == paper
    assert ("not the paper's XMarket" in text) != paper
    t3 = tables.table3_markdown(["metric", "wo_user_view_delta", "wo_cross_domain_delta"], [["HR@10", "-1.000", ""]],
                                "Table 3", paper_numbers=paper)
    assert bool(re.search(r"-1\.000 \([+-]\d", t3)) == paper


@pytest.mark.parametrize(("kinds", "comparable"), [
    (["paper"], True), (["twin"], True), (["other"], False), (["paper", "other"], False)])
def test_header_says_what_the_data_is(kinds, comparable):
    datasets = [{"name": "x", "paper_data": {"kind": k, "what": f"{k} data"}} for k in kinds]
    lines = header_lines(datasets)
    assert on_paper_data(datasets) == comparable
    assert [f"Data: {k} data." for k in dict.fromkeys(kinds)] == lines[:len(set(kinds))]
    assert any("informational" in line for line in lines) != comparable


# --- skipped and absent methods by their plain names -------------------------------------------------


def test_skipped_methods_are_named_plainly_in_every_table():
    results = [result("clip", "CLIP", 0, status="skipped", display="CLIP []",
                      reason="dataset lacks text (method requires text)"),
               result("missrec", "MISSRec", 0, status="skipped", display="MISSRec[?, text only]",
                      reason="dataset lacks text"),
               result("popularity", None, 10.0, display="Popularity")]
    assert [m.display for m in results] == ["CLIP", "MISSRec", "Popularity"]
    text = tables.table1_markdown(results, "Table 1", not_run=["Item2Vec"])
    assert "| CLIP | MISSRec | Popularity |" in text and "[]" not in text and "[?" not in text
    assert "- CLIP: skipped, dataset lacks text (method requires text)" in text
    assert "- not run in this report: Item2Vec" in text
    rows = noise.noise_rows(noise.matching_columns(results, "item-to-item"), "HR@50", "item-to-item")
    lines = noise.noise_markdown(rows, "HR@50", "item-to-item", tables.absent_lines(results, ["Item2Vec"]))
    assert "- MISSRec: skipped, dataset lacks text" in lines and {r[3] for r in rows} == {"Popularity"}


# --- noise: cases and CI half-widths per group -------------------------------------------------------


def test_hit_rate_bootstrap_from_counts_matches_the_case_bootstrap():
    values = np.r_[np.ones(22), np.zeros(157)]  # 22 hits in MovieLens-100k's 179 test cases
    lo, hi = bootstrap_ci(values, n_boot=4000, seed=1)
    lo2, hi2 = bootstrap_ci_hits(22, 179, n_boot=4000, seed=2)
    assert abs(lo - lo2) < 0.01 and abs(hi - hi2) < 0.01 and lo < 22 / 179 < hi
    assert bootstrap_ci_hits(0, 50) == (0.0, 0.0)
    with pytest.raises(ValueError):
        bootstrap_ci_hits(5, 4)


def test_small_groups_mark_differences_within_noise_and_large_groups_do_not():
    # MovieLens-100k: Popularity 12.3 vs Item2Vec 10.1 HR@50 on 179 cases is noise; on 100,000 cases it is not
    for n, within in ((179, "yes"), (100_000, "no")):
        cols = noise.matching_columns([result("popularity", None, 12.3, n), result("item2vec", "Item2Vec", 10.1, n)],
                                      "item-to-item")
        rows = noise.noise_rows(cols, "HR@50", "item-to-item")
        assert [r[1] for r in rows] == ["all", "all", "overlapped", "overlapped", "unseen", "unseen"]
        pop, i2v = rows[0], rows[1]
        assert pop[3] == "popularity" and pop[6] == "yes" and i2v[6] == "no" and pop[2] == str(n)
        assert i2v[7] == within
        width = float(pop[5])
        assert width == pytest.approx(100 * 1.96 * np.sqrt(0.123 * 0.877 / n), rel=0.15)
    md = noise.noise_markdown(rows, "HR@50", "item-to-item")
    assert "| all | 100000 | **12.30** ±" in "\n".join(md)


def test_transfer_reports_noise_over_table_6s_conditions():
    from benchmark.reporting.transfer import _noise_columns

    def rec(method: str, sf, hr: float, n: int) -> dict:
        return {"condition": {"method": method, "seed": 0, "source_fraction": sf, "target_fraction": 1.0,
                              "end_to_end": True}, "transfer": {"finetune_methods": []},
                "next_item": {"all": {"n": n, "HR@10": hr}, "text-target": {"n": n // 2, "HR@10": hr}}}

    cols = _noise_columns([rec("transrec", 1.0, 4.0, 300), rec("tfs", None, 3.0, 300),
                           rec("transrec", 0.5, 9.0, 300)])  # a source-share condition is not in Table 6
    rows = noise.noise_rows(cols, "HR@10", "next-item")
    assert [(r[1], r[3], r[2]) for r in rows] == [("all", "TFS", "300"), ("all", "TransRec", "300"),
                                                  ("text-target", "TFS", "150"), ("text-target", "TransRec", "150")]
    assert rows[1][6] == "yes" and rows[0][7] == "yes"  # 4.0 vs 3.0 % of 300 cases: within noise


def test_auc_half_width_is_delongs_standard_error():
    from benchmark.tasks.ranking.metrics import auc, auc_se

    rng = np.random.default_rng(0)
    labels = rng.random(3000) < 0.2
    scores = labels * 0.8 + rng.normal(size=3000)
    boot = [auc(labels[i], scores[i]) for i in (rng.integers(0, 3000, 3000) for _ in range(400))]
    assert auc_se(labels, scores) == pytest.approx(np.std(boot), rel=0.2)
    assert np.isnan(auc_se(np.array([1, 0, 0]), np.array([0.1, 0.2, 0.3])))


# --- end to end: a real-format XMarket subset --------------------------------------------------------


@pytest.mark.slow
def test_report_on_an_xmarket_subset_is_honest_about_its_data(tmp_path):
    from benchmark.data.simulator import generate
    from benchmark.reporting.matching import write_suite_reports
    from benchmark.tasks.matching.runner import run_suite

    root = generate(tmp_path / "data", scale="tiny", seed=0, progress=False)
    (root / "SIMULATED.json").unlink()  # real-format ratings, no twin marker, no metadata: an ID-only subset
    for p in root.glob("us/*/metadata_*.json.gz"):
        p.unlink()
    run = run_suite("xmarket-matching", scale="tiny", methods=["clip", "popularity", "random"], data_dir=root,
                    results_dir=tmp_path / "results", progress=False, echo=lambda s: None, twin_fallback=False)
    assert run.inputs.paper_data["kind"] == "other"
    text = write_suite_reports("xmarket-matching", tmp_path / "results", tmp_path / "reports")
    head = text.splitlines()[:5]
    assert head[2].startswith("Data: XMarket files, but not the paper's XMarket") and "us/Books" in head[2]
    assert not PAPER_CELL.search(text) and "(1.458)" not in text
    assert "| CLIP | Popularity | Random |" in text and "- CLIP: skipped, dataset lacks text" in text
    assert "**not run (informational)**" in text and "**not run**" not in text
    n_cases = len(run.inputs.split.cases)
    assert f"| all | {n_cases} | " in text and "within noise" in text.lower()
    out = tmp_path / "reports" / "xmarket-matching" / "xmarket-tiny-subset"
    rows = list(csv.DictReader((out / "noise.csv").open()))
    assert {r["method"] for r in rows} == {"Popularity", "Random"} and {r["protocol"] for r in rows} == {
        "item-to-item", "next-item"}
    assert "Data: XMarket files, but not" in (out / "claims.md").read_text()
    record = next(r for r in run.records if r.method == "popularity")
    assert record.dataset["paper_data"]["kind"] == "other"


@pytest.mark.slow
def test_the_twins_report_keeps_the_papers_numbers(tiny_suite_run):
    from benchmark.reporting.matching import write_suite_reports

    _, results, reports = tiny_suite_run
    text = write_suite_reports("xmarket-matching", results, reports)
    assert "Data: the SYNTHETIC XMarket twin" in text and PAPER_CELL.search(text)
    assert "informational" not in text and "### Noise: cases and 95 % CI half-widths of HR@50" in text


def test_records_made_before_the_check_count_as_other_data_except_the_twin():
    assert on_paper_data([{"name": "xmarket-sim", "synthetic": True}])
    assert not on_paper_data([{"name": "xmarket", "synthetic": False}])
    assert "before the paper-data check" in header_lines([{"name": "xmarket", "label": "xmarket (real)"}])[0]


def test_cards_of_every_layout_exist_and_say_whether_ids_are_shared():
    from benchmark.data.cards import find_card, shared_item_ids

    for name in ("xmarket", "xmarket-5core", "wsdm-cup-2022"):
        assert shared_item_ids(find_card(name)) is True
    assert Path(find_card("wsdm-cup-2022")["_path"]).name == "wsdm-cup-2022.yaml"
