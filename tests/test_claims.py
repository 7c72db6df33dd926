"""The claim checks can fail: each is computed from the numbers, not asserted."""

from __future__ import annotations

import pytest

from benchmark.reporting.claims import C12_ABLATIONS, check_claims, claim_table
from benchmark.reporting.paper_data import on_paper_data
from benchmark.reporting.results import METRICS, MethodResult
from benchmark.store.records import RunRecord

#: Fixtures' runs converged (early stopping on validation) unless a test says otherwise.
CONVERGED = {"stop_reason": "converged"}


def result(method: str, column: str | None, level: float, tail_factor: float = 0.5) -> MethodResult:
    metrics = {}
    for group in ("overlapped", "unseen", "all"):
        metrics[group] = {m: level for m in METRICS}
    metrics["head"] = {"HR@50": level}
    metrics["tail"] = {"HR@50": level * tail_factor}
    for d, share in (("Books", 1.0), ("Electronics", 1.0)):
        metrics[f"domain={d}"] = {"HR@50": level * share}
    record = RunRecord(run_key=method, suite="s", method=method, display=column or method, paper_column=column,
                       seed=0, scale="tiny", status="done", metrics=metrics, training=CONVERGED,
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
                       seed=0, scale="tiny", status="done", metrics=metrics, next_item_metrics=nxt,
                       training=CONVERGED)
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


# --- Every verdict of every matching-side claim (C1..C8, C12), each condition of a compound claim on its own ---

USERS = ("overlapped", "unseen")
#: Table 1 in the paper's order (C1..C5 hold): CLIP < VQRec < PGG < Item2Vec < UniEmb_Text < UniEmb.
LEVELS = {"CLIP": 1.0, "VQRec": 2.0, "PGG": 3.5, "Item2Vec": 4.0, "UniEmb_Text": 6.0, "UniEmb": 7.0}
SHARE = {"Books": 100, "Electronics": 20, "Cell": 10}  # Books is the largest domain (C8)


def res(column: str, level: float = 1.0, cells: dict | None = None, head_tail: tuple[float, float] | None = None,
        domains: dict[str, float] | None = None, run_status: str = "done") -> MethodResult:
    """One method at ``level`` on every Table 1 cell, ``cells`` = {(users, metric): value} overriding some."""
    metrics = {users: {m: (cells or {}).get((users, m), level) for m in METRICS} for users in USERS}
    head, tail = head_tail or (level, level / 2)
    metrics["head"], metrics["tail"] = {"HR@50": head}, {"HR@50": tail}
    for d, v in (domains or dict.fromkeys(SHARE, level)).items():
        metrics[f"domain={d}"] = {"HR@50": v}
    record = RunRecord(run_key=column, suite="s", method=column.lower(), display=column, paper_column=column,
                       seed=0, scale="tiny", status=run_status, metrics=metrics, training=CONVERGED,
                       dataset={"domain_interactions": SHARE})
    return MethodResult(column.lower(), column, column, run_status, "", [record])


def matching(without: tuple[str, ...] = (), change: dict | None = None) -> list[MethodResult]:
    """LEVELS minus the columns ``without``, with ``change`` = {column: {(users, metric): value}}."""
    return [res(c, level, (change or {}).get(c)) for c, level in LEVELS.items() if c not in without]


def verdicts(claims) -> dict[str, str]:
    return {c.cid: c.status for c in claims}


def test_the_papers_table1_ordering_makes_c1_to_c5_hold() -> None:
    got = verdicts(check_claims(matching(), None))
    assert [got[c] for c in ("C1", "C2", "C3", "C4", "C5")] == ["holds"] * 5


@pytest.mark.parametrize("users", USERS)
@pytest.mark.parametrize(("cid", "column", "metric", "value"), [
    ("C1", "UniEmb", "NDCG@50", 3.9),  # UniEmb below Item2Vec on one cell
    ("C2", "UniEmb", "MRR@10", 5.9),  # UniEmb below UniEmb_Text on one cell (still above every baseline)
    ("C3", "UniEmb_Text", "HR@50", 3.9),  # UniEmb_Text below Item2Vec on one cell
    ("C4", "CLIP", "HR@10", 2.5),  # CLIP above VQRec on one cell
    ("C5", "VQRec", "MRR@50", 3.6),  # a sequence-item method above PGG on one cell
])
def test_one_cell_out_of_the_papers_order_makes_the_claim_fail(cid, column, metric, value, users) -> None:
    got = verdicts(check_claims(matching(change={column: {(users, metric): value}}), None))
    assert got[cid] == "fails"


def test_c1_and_c3_need_strict_wins_but_c2_allows_a_tie() -> None:
    tie = {"UniEmb": {("unseen", "HR@10"): 4.0}, "UniEmb_Text": {("overlapped", "HR@10"): 4.0}}  # = Item2Vec
    got = verdicts(check_claims(matching(change=tie), None))
    assert (got["C1"], got["C3"]) == ("fails", "fails")
    same = [res("UniEmb", 7), res("UniEmb_Text", 7), res("CLIP", 1)]
    assert verdicts(check_claims(same, None))["C2"] == "holds"


@pytest.mark.parametrize(("cid", "without"), [
    ("C1", ("UniEmb",)),
    ("C1", ("CLIP", "VQRec", "PGG", "Item2Vec")),  # no baseline
    ("C2", ("UniEmb",)),
    ("C2", ("UniEmb_Text",)),
    ("C3", ("UniEmb_Text",)),
    ("C3", ("CLIP", "VQRec", "PGG", "Item2Vec")),
    ("C4", ("CLIP",)),
    ("C4", ("VQRec", "PGG", "Item2Vec", "UniEmb_Text", "UniEmb")),  # nothing to compare CLIP with
    ("C5", ("PGG", "Item2Vec")),
    ("C5", ("VQRec",)),
    ("C7", ("UniEmb",)),
    ("C8", ("UniEmb",)),
    ("C8", ("CLIP", "VQRec", "PGG", "Item2Vec")),
])
def test_a_claim_whose_methods_did_not_run_is_not_run(cid, without) -> None:
    assert verdicts(check_claims(matching(without), None))[cid] == "not run"


def test_failed_runs_are_not_evidence() -> None:
    runs = [res("UniEmb", 7, run_status="failed"), res("CLIP", 1)]
    got = verdicts(check_claims(runs, None))
    assert got["C1"] == "not run" and got["C4"] == "not run"


@pytest.mark.parametrize("cid", ["C6", "C9", "C10", "C11", "C12", "C12-i2i"])
def test_claims_from_other_suites_are_not_run_without_them(cid) -> None:
    assert verdicts(check_claims(matching(), None))[cid] == "not run"


# C6: deltas (w/o user view, w/o cross-domain) of Table 3, percentage points
@pytest.mark.parametrize(("rows", "expected"), [
    ([["HR@10", "-1.0", "-0.2"], ["HR@50", "-2.0", "-0.1"]], "holds"),
    ([["HR@10", "-1.0", "-0.2"], ["HR@50", "-2.0", "0.1"]], "fails"),  # cross-domain does not hurt (one metric)
    ([["HR@10", "-1.0", "-0.2"], ["HR@50", "-0.1", "-0.5"]], "fails"),  # user view hurts less (one metric)
    ([["HR@10", "-1.0", ""], ["HR@50", "-2.0", ""]], "not run"),  # cross-domain ablation not run
    ([["HR@10", "", "-0.2"], ["HR@50", "", "-0.1"]], "not run"),  # user-view ablation not run
    ([["HR@10", "0.5", ""], ["HR@50", "-2.0", ""]], "fails"),  # the one ablation run does not hurt
    (None, "not run"),
])
def test_c6_verdict_from_the_ablation_deltas(rows, expected) -> None:
    assert verdicts(check_claims([], rows))["C6"] == expected


# C7: HR@50 on head and tail items. Base: every method drops, Item2Vec (ID-only) most, UniEmb best on both.
C7_BASE = {"UniEmb": (10.0, 8.0), "CLIP": (5.0, 4.0), "Item2Vec": (9.0, 3.0)}


@pytest.mark.parametrize(("change", "expected"), [
    ({}, "holds"),
    ({"CLIP": (5.0, 5.0)}, "fails"),  # one method does not drop on tail
    ({"CLIP": (5.0, 1.0)}, "fails"),  # a non-ID method drops more than the ID-only one
    ({"Item2Vec": (11.0, 3.0)}, "fails"),  # UniEmb not best on head
    ({"CLIP": (9.5, 8.5)}, "fails"),  # UniEmb not best on tail
])
def test_c7_fails_when_any_one_of_its_three_conditions_fails(change, expected) -> None:
    runs = [res(c, head_tail=ht) for c, ht in {**C7_BASE, **change}.items()]
    assert verdicts(check_claims(runs, None))["C7"] == expected


def test_c7_without_an_id_only_method_is_not_run_unless_another_part_fails() -> None:
    no_id = {c: ht for c, ht in C7_BASE.items() if c != "Item2Vec"}
    assert verdicts(check_claims([res(c, head_tail=ht) for c, ht in no_id.items()], None))["C7"] == "not run"
    worse = {**no_id, "CLIP": (5.0, 6.0)}  # CLIP gains on tail
    assert verdicts(check_claims([res(c, head_tail=ht) for c, ht in worse.items()], None))["C7"] == "fails"


# C8: per-domain HR@50; Books is the largest domain. Base: PGG beats UniEmb on Books only (allowed), weak elsewhere.
C8_BASE = {"UniEmb": (10.0, 10.0, 10.0), "PGG": (11.0, 5.0, 5.0), "CLIP": (2.0, 2.0, 2.0)}


def c8_runs(table: dict[str, tuple[float, float, float]]) -> list[MethodResult]:
    return [res(c, domains=dict(zip(SHARE, v, strict=True))) for c, v in table.items()]


@pytest.mark.parametrize(("change", "expected"), [
    ({}, "holds"),
    ({"PGG": (5.0, 8.0, 5.0)}, "fails"),  # UniEmb's gain over PGG is not smallest in the largest domain
    ({"CLIP": (2.0, 12.0, 12.0)}, "fails"),  # UniEmb wins 1 of 3 domains against CLIP
])
def test_c8_fails_when_either_condition_fails(change, expected) -> None:
    assert verdicts(check_claims(c8_runs({**C8_BASE, **change}), None))["C8"] == expected


def test_c8_needs_two_domains_and_an_id_only_method() -> None:
    one_domain = [res("UniEmb", 7, domains={"Books": 7}), res("PGG", 4, domains={"Books": 4})]
    assert verdicts(check_claims(one_domain, None))["C8"] == "not run"
    no_id = {c: v for c, v in C8_BASE.items() if c != "PGG"}
    assert verdicts(check_claims(c8_runs(no_id), None))["C8"] == "not run"
    assert verdicts(check_claims(c8_runs({**no_id, "CLIP": (2.0, 12.0, 12.0)}), None))["C8"] == "fails"


# C12: the full UniM2Rec against each of its three ablations, on both protocols
@pytest.mark.parametrize("protocol", ["C12", "C12-i2i"])
@pytest.mark.parametrize("ablation", ["unim2rec-text", "unim2rec-linear", "unim2rec-single-domain"])
def test_c12_fails_when_the_full_model_loses_to_any_one_ablation(ablation, protocol) -> None:
    runs = [c12_result("unim2rec", 10, 10)] + [c12_result(a, 8, 8) for a in C12_ABLATIONS]
    assert verdicts(check_claims([], None, runs))[protocol] == "holds"
    runs = [c12_result(m, 11, 11) if m == ablation else r for m, r in ((r.method, r) for r in runs)]
    assert verdicts(check_claims([], None, runs))[protocol] == "fails"


# Off the paper's XMarket (and its twin) every verdict is informational
PAPER = {"name": "xmarket", "paper_data": {"kind": "paper", "what": "the paper's XMarket"}}
SUBSET = {"name": "xmarket", "paper_data": {"kind": "other", "what": "us/Books 44,779 of 9,053,776 rows"}}
TWIN = {"name": "xmarket-sim", "synthetic": True, "paper_data": {"kind": "twin", "what": "the twin"}}
OLD_TWIN = {"name": "xmarket-sim", "synthetic": True}  # recorded before the paper-data check
OLD_REAL = {"name": "xmarket", "synthetic": False}  # ditto: not known to be the paper's data
MOVIELENS = {"name": "recbole:ml-100k", "paper_data": {"kind": "other", "what": "ml-100k"}}


@pytest.mark.parametrize(("datasets", "informational"), [
    ([PAPER], False), ([TWIN], False), ([OLD_TWIN], False), ([SUBSET], True), ([OLD_REAL], True),
    ([MOVIELENS], True), ([PAPER, MOVIELENS], True), ([], True)])
def test_claim_table_marks_verdicts_informational_off_the_papers_data(datasets, informational) -> None:
    claims = check_claims(matching(change={"CLIP": {("unseen", "HR@10"): 9.0}}), None)
    lines = claim_table(claims, on_paper_data(datasets))
    rows = [line for line in lines if line.startswith("| C")]
    assert len(rows) == len(claims)
    for claim, row in zip(claims, rows, strict=True):
        marked = f"**{claim.status} (informational)**" in row
        assert marked == informational and f"**{claim.status}" in row
    assert lines[0].startswith("Informational:") == informational
    assert any("**fails" in r for r in rows) and any("**holds" in r for r in rows)


# --- Verdicts respect the training budget ---------------------------------------------------------


@pytest.mark.parametrize("reason", ["max_epochs", "time_limit", "not recorded"])
def test_a_verdict_resting_on_a_run_that_did_not_converge_is_inconclusive(reason: str) -> None:
    runs = matching()
    uni = next(m for m in runs if m.paper_column == "UniEmb")
    uni.records[0].training = {"stop_reason": reason} if reason != "not recorded" else {}
    claims = {c.cid: c.status for c in check_claims(runs, None)}
    expected = f"inconclusive (not converged: {uni.method} (seed 0): {reason})"
    assert claims["C1"] == claims["C2"] == expected  # UniEmb decides both
    assert claims["C3"] == "holds"  # UniEmb_Text vs the baselines: UniEmb does not decide it


def test_untrained_methods_do_not_make_a_verdict_inconclusive() -> None:
    runs = matching()
    clip = next(m for m in runs if m.paper_column == "CLIP")
    clip.records[0].training = {"stop_reason": "untrained"}
    assert {c.cid: c.status for c in check_claims(runs, None)}["C4"] == "holds"


def test_c6_is_inconclusive_when_an_ablation_run_did_not_converge() -> None:
    """C6's deltas rest on the full model and both ablations: one stopped by its cap -> inconclusive."""
    holds = [["HR@10", "-1.0", "-0.2"], ["HR@50", "-2.0", "-0.1"]]
    runs = [result("uniembedding", "UniEmb", 7), result("uniembedding-no-user-view", None, 6),
            result("uniembedding-no-cross-domain", None, 6.5)]
    assert status(check_claims([], holds, ablation_runs=runs), "C6") == "holds"
    runs[1].records[0].training = {"stop_reason": "max_epochs"}
    assert status(check_claims([], holds, ablation_runs=runs), "C6").startswith("inconclusive (not converged")


def test_a_claim_deciding_with_a_method_not_above_popularity_is_inconclusive() -> None:
    runs = [result("clip", "CLIP", 1), result("item2vec", "Item2Vec", 4), result("uniembedding-text", "UniEmb_Text", 6),
            result("uniembedding", "UniEmb", 7)]
    below = {"Item2Vec": "item-to-item HR@50 3.00 vs Popularity 3.00, Holm p=1"}
    claims = check_claims(runs, None, not_competent=below)
    assert status(claims, "C1").startswith("inconclusive (not competent: Item2Vec (item-to-item HR@50 3.00")
    assert status(claims, "C2") == "holds"  # UniEmb vs UniEmb_Text: Item2Vec does not decide it
    assert status(check_claims(runs, None), "C1") == "holds"


def test_below_popularity_needs_a_significant_gain_in_some_protocol(tmp_path) -> None:
    """A method level with Popularity everywhere is named; one above it in either protocol is not."""
    import numpy as np

    from benchmark.reporting.significance import below_popularity, floor_lines

    n = 60
    hit, miss = np.full(n, 3, np.int32), np.full(n, 500, np.int32)
    half = np.where(np.arange(n) % 2 == 0, 3, 500).astype(np.int32)
    ranks = {"popularity": (half, half), "good": (hit, half), "seq": (miss, hit), "level": (half, half),
             "worse": (miss, miss)}
    runs = []
    for method, (i2i, nxt) in ranks.items():
        folder = tmp_path / "s" / method
        folder.mkdir(parents=True)
        np.save(folder / "ranks.npy", i2i)
        np.save(folder / "next_item_ranks.npy", nxt)
        record = RunRecord(run_key=method, suite="s", method=method, display=method.title(), paper_column=None, seed=0,
                           scale="tiny", status="done", metrics={}, training=CONVERGED)
        runs.append(MethodResult(method, method.title(), None, "done", "", [record]))
    below = below_popularity(runs, tmp_path)
    assert sorted(below) == ["Level", "Worse"]
    assert "item-to-item HR@50 50.00 vs Popularity 50.00" in below["Level"] and "next-item HR@10" in below["Level"]
    assert below_popularity([r for r in runs if r.method != "popularity"], tmp_path) == {}
    assert "Level (item-to-item HR@50" in floor_lines(below, runs)[-1] and "every method" in floor_lines({}, runs)[-1]
    assert "Popularity not in this run" in floor_lines({}, runs[1:])[-1]
    assert floor_lines({}, runs[:1]) == []  # only the floor ran: nothing to check, nothing said
