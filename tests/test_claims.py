"""The claim checks can fail: each is computed from the numbers, not asserted."""

from __future__ import annotations

from benchmark.records import RunRecord
from benchmark.reporting.claims import check_claims
from benchmark.reporting.results import METRICS, MethodResult


def result(method: str, column: str | None, level: float, tail_factor: float = 0.5) -> MethodResult:
    metrics = {}
    for group in ("overlapped", "unseen", "all"):
        metrics[group] = {m: level for m in METRICS}
    metrics["head"] = {"HR@50": level}
    metrics["tail"] = {"HR@50": level * tail_factor}
    for d, share in (("Books", 1.0), ("Electronics", 1.0)):
        metrics[f"domain={d}"] = {"HR@50": level * share}
    record = RunRecord(run_key=method, suite="s", method=method, display=column or method, paper_column=column,
                       seed=0, scale="tiny", status="done", metrics=metrics,
                       dataset={"domain_interactions": {"Books": 10, "Electronics": 5}})
    return MethodResult(method, column or method, column, "done", "", [record])


def status(claims, cid: str) -> str:
    return next(c.status for c in claims if c.cid == cid)


def test_c1_c3_c4_hold_when_the_ordering_holds() -> None:
    claims = check_claims([result("clip", "CLIP", 1), result("item2vec", "Item2Vec", 4),
                           result("uniembedding-text", "UniEmb_Text", 6), result("uniembedding", "UniEmb", 7)], None)
    assert status(claims, "C1") == "holds"
    assert status(claims, "C2") == "holds"
    assert status(claims, "C3") == "holds"
    assert status(claims, "C4") == "holds"
    assert status(claims, "C5") == "not run"
    assert status(claims, "C6") == "not run"


def test_claims_fail_when_the_ordering_breaks() -> None:
    claims = check_claims([result("clip", "CLIP", 6.5), result("item2vec", "Item2Vec", 4),
                           result("uniembedding-text", "UniEmb_Text", 7), result("uniembedding", "UniEmb", 6)], None)
    assert status(claims, "C1") == "fails"
    assert status(claims, "C2") == "fails"
    assert status(claims, "C4") == "fails"


def test_c6_reads_the_ablation_deltas() -> None:
    holds = [["HR@10", "-1.0", "-0.2"], ["HR@50", "-2.0", "-0.1"]]
    fails = [["HR@10", "-0.1", "-0.2"], ["HR@50", "0.5", "-0.1"]]
    assert status(check_claims([], holds), "C6") == "holds"
    assert status(check_claims([], fails), "C6") == "fails"


def test_c7_needs_every_method_to_drop_on_tail() -> None:
    ok = check_claims([result("item2vec", "Item2Vec", 4, tail_factor=0.2), result("uniembedding", "UniEmb", 7)], None)
    assert status(ok, "C7") == "holds"
    bad = check_claims([result("item2vec", "Item2Vec", 4, tail_factor=1.5), result("uniembedding", "UniEmb", 7)], None)
    assert status(bad, "C7") == "fails"


def test_table3_needs_an_ablation_run() -> None:
    from benchmark.reporting.tables import table3_rows

    assert table3_rows([result("uniembedding", "UniEmb", 7)]) is None
    header, rows = table3_rows([result("uniembedding", "UniEmb", 7), result("uniembedding-wo-user-view", None, 5)])
    assert header == ["metric", "wo_user_view_delta", "wo_cross_domain_delta"]
    assert rows[0] == ["HR@10", "-2.000", ""]


def test_c5_is_evaluated_with_whichever_sequence_item_methods_ran() -> None:
    id_methods = [result("item2vec", "Item2Vec", 5), result("pgg", "PGG", 4)]
    holds = check_claims([*id_methods, result("vqrec", "VQRec", 2)], None)
    assert status(holds, "C5") == "holds"
    assert "VQRec" in next(c.evidence for c in holds if c.cid == "C5")
    fails = check_claims([*id_methods, result("vqrec", "VQRec", 2), result("unisrec", "UniSRec", 4.5)], None)
    assert status(fails, "C5") == "fails"  # UniSRec beats PGG
    assert status(check_claims([result("vqrec", "VQRec", 2)], None), "C5") == "not run"  # no ID method
def c12_result(method: str, next_level: float, i2i_level: float) -> MethodResult:
    metrics = {"all": {m: i2i_level for m in ("HR@10", "HR@50", "NDCG@10", "NDCG@50")}}
    nxt = {"all": {m: next_level for m in ("HR@10", "HR@20", "NDCG@10", "NDCG@20")}}
    record = RunRecord(run_key=method, suite="unim2rec-c12", method=method, display=method, paper_column=None,
                       seed=0, scale="tiny", status="done", metrics=metrics, next_item_metrics=nxt)
    return MethodResult(method, method, None, "done", "", [record])


def test_c12_is_checked_on_both_protocols_from_the_c12_suite() -> None:
    assert status(check_claims([], None), "C12") == "not run"
    runs = [c12_result("unim2rec", 10, 5), c12_result("unim2rec-text", 8, 6),
            c12_result("unim2rec-linear", 9, 4), c12_result("unim2rec-single-domain", 7, 4)]
    claims = check_claims([], None, runs)
    assert status(claims, "C12") == "holds"  # next-item: the full model beats all three ablations
    assert status(claims, "C12-i2i") == "fails"  # item-to-item: text-only wins
    evidence = next(c.evidence for c in claims if c.cid == "C12-i2i")
    assert "multi-modal > text-only: no (HR@10 -1.00" in evidence
    runs[3] = c12_result("unim2rec-single-domain", 10.5, 4)
    assert status(check_claims([], None, runs), "C12") == "fails"
    assert status(check_claims([], None, runs[:2]), "C12") == "not run"  # two ablations missing
