"""The twin question in the reports: [proposal] columns (UniSRec/MISSRec transductive) and the
earlier-part user view row are shown, labelled, placed beside their paper column, and never decide a claim."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from benchmark.reporting.claims import check_claims
from benchmark.reporting.matching import write_suite_reports
from benchmark.reporting.results import METRICS, aggregate
from benchmark.reporting.tables import table3_rows
from benchmark.store.records import RunRecord
from benchmark.tasks.matching.runner import run_suite

USERS = ("overlapped", "unseen")
SHARE = {"Books": 100, "Electronics": 20}
#: (method, paper column, level): the paper's ordering, so C1..C5 hold on the paper columns alone
PAPER = [("clip", "CLIP", 1.0), ("vqrec", "VQRec", 2.0), ("unisrec", "UniSRec", 2.5), ("pgg", "PGG", 3.5),
         ("item2vec", "Item2Vec", 4.0), ("uniembedding-text", "UniEmb_Text", 6.0), ("uniembedding", "UniEmb", 7.0)]


def record(method: str, column: str | None, level: float, stop: str = "converged") -> RunRecord:
    metrics = {g: {m: level for m in METRICS} for g in (*USERS, "all")}
    metrics["head"], metrics["tail"] = {"HR@50": level}, {"HR@50": level / 2}
    for d in SHARE:
        metrics[f"domain={d}"] = {"HR@50": level}
    return RunRecord(run_key=method, suite="s", method=method, display=column or method.upper(), paper_column=column,
                     seed=0, scale="tiny", status="done", metrics=metrics, training={"stop_reason": stop},
                     dataset={"domain_interactions": SHARE})


def test_transductive_columns_never_decide_a_claim_about_the_papers_methods() -> None:
    paper = [record(m, c, level) for m, c, level in PAPER]
    # the transductive twins beat everything and did not converge: used as deciding methods, they would
    # make C1/C3 fail (UniEmb no longer best), C5 change, and every verdict "inconclusive (not converged)"
    twins = [record("unisrec-transductive", None, 50.0, stop="max_epochs"),
             record("missrec-transductive", None, 50.0, stop="max_epochs"),
             record("uniembedding-earlier-view", None, 50.0, stop="max_epochs")]
    alone = {c.cid: (c.status, c.evidence) for c in check_claims(aggregate(paper), None)}
    beside = {c.cid: (c.status, c.evidence) for c in check_claims(aggregate(paper + twins), None)}
    assert [alone[c][0] for c in ("C1", "C2", "C3", "C4", "C5")] == ["holds"] * 5
    assert beside == alone
    assert not any("[proposal]" in evidence or "TRANSDUCTIVE" in evidence for _, evidence in beside.values())


def test_proposal_columns_stand_beside_their_paper_column_and_say_so() -> None:
    runs = [record(m, c, level) for m, c, level in PAPER] + [
        record("missrec", "MISSRec", 3.0), record("missrec-transductive", None, 3.1),
        record("unisrec-transductive", None, 2.6), record("sasrec", None, 3.0),
        record("uniembedding-earlier-view", None, 6.5)]
    order = [(m.method, m.display) for m in aggregate(runs)]
    names = [m for m, _ in order]
    assert names.index("unisrec-transductive") == names.index("unisrec") + 1
    assert names.index("missrec-transductive") == names.index("missrec") + 1
    assert names[-2:] == ["sasrec", "uniembedding-earlier-view"]  # not a paper column's twin: with the others
    shown = dict(order)
    assert shown["unisrec-transductive"].endswith("(transductive) [proposal]")
    assert shown["missrec-transductive"].endswith("(transductive) [proposal]")
    assert shown["uniembedding-earlier-view"].endswith("[proposal]") and "[proposal]" not in shown["unisrec"]


def test_the_earlier_view_is_a_table3_row_never_a_column_of_the_papers_table3() -> None:
    runs = aggregate([record("uniembedding", "UniEmb", 7.0), record("uniembedding-wo-user-view", None, 8.0),
                      record("uniembedding-earlier-view", None, 6.0)])
    header, rows = table3_rows(runs)
    assert header == ["metric", "wo_user_view_delta", "wo_cross_domain_delta"]  # C6 reads these columns only


# --- tiny runs: the reports show the new rows and columns --------------------------------------------------

FAST = ("pretrain_epochs=1", "finetune_epochs=2", "patience=1")


@pytest.fixture(scope="module")
def twin_runs(tiny_data_dir: Path, tiny_suite_run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny session run (clip, item2vec, popularity, random) plus, in a copy of its results, the
    two transductive columns and MISSRec, and a tiny ablation suite with the earlier-part variant."""
    _, session_results, _ = tiny_suite_run
    results = tmp_path_factory.mktemp("twin") / "results"
    shutil.copytree(session_results, results)
    methods = ["missrec", "missrec-transductive", "unisrec-transductive"]
    run_suite("xmarket-matching", scale="tiny", methods=methods, data_dir=tiny_data_dir, results_dir=results,
              overrides=tuple(f"{m}.{o}" for m in methods for o in FAST), progress=False, echo=lambda s: None)
    ablation = ["uniembedding", "uniembedding-wo-user-view", "uniembedding-earlier-view"]
    run_suite("xmarket-ablation", scale="tiny", methods=ablation, data_dir=tiny_data_dir, results_dir=results,
              overrides=tuple(f"{m}.{o}" for m in ablation for o in ("epochs=2", "patience=1")), progress=False,
              echo=lambda s: None)
    return results


def test_table1_and_the_next_item_table_show_the_transductive_columns(twin_runs: Path, tmp_path: Path) -> None:
    text = write_suite_reports("xmarket-matching", twin_runs, tmp_path)
    folder = next((tmp_path / "xmarket-matching").iterdir())
    table1 = next(csv.reader((folder / "table1.csv").open()))
    next_item = next(csv.reader((folder / "next_item.csv").open()))
    for header in (table1, next_item):
        paper = next(i for i, h in enumerate(header) if h.startswith("MISSRec[") and "[proposal]" not in h)
        assert header[paper + 1].startswith("MISSRec-T[") and header[paper + 1].endswith("(transductive) [proposal]")
        assert any(h.startswith("UniSRec-T[") and h.endswith("(transductive) [proposal]") for h in header)
    table1_md = text.split("### Table 1", 1)[1].split("###", 1)[0]
    assert "(transductive) [proposal]: UniSRec with transductive fine-tuning" in table1_md
    assert "MISSRec with transductive fine-tuning" in table1_md
    claims = (folder / "claims.md").read_text()
    assert "UniSRec-T" not in claims and "MISSRec-T" not in claims


def test_the_ablation_report_has_the_earlier_view_as_its_own_proposal_row(twin_runs: Path, tmp_path: Path) -> None:
    text = write_suite_reports("xmarket-ablation", twin_runs, tmp_path)
    folder = next((tmp_path / "xmarket-ablation").iterdir())
    rows = {r["method"]: r for r in csv.DictReader((folder / "table3_variants.csv").open())}
    assert list(rows) == ["uniembedding", "uniembedding-wo-user-view", "uniembedding-earlier-view"]
    assert rows["uniembedding-earlier-view"]["variant"] == "earlier-part user view [proposal]"
    assert rows["uniembedding"]["HR@50_delta"] == ""
    delta = float(rows["uniembedding-earlier-view"]["HR@50"]) - float(rows["uniembedding"]["HR@50"])
    assert float(rows["uniembedding-earlier-view"]["HR@50_delta"]) == pytest.approx(delta, abs=2e-3)  # both rounded to 3 places
    assert rows["uniembedding-earlier-view"]["stop_reason"] in ("converged", "max_epochs")
    section = text.split("### Table 3 by variant", 1)[1].split("###", 1)[0]
    assert "| earlier-part user view [proposal] |" in section and "[paper -2.256]" in section
    paper_shaped = next(csv.reader((folder / "table3.csv").open()))
    assert paper_shaped == ["metric", "wo_user_view_delta", "wo_cross_domain_delta"]
