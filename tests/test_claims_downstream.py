"""Every verdict of the claims from the ranking and transfer suites (C9, C10, C11), each condition on its own.

C9 (Table 4): pretrained embeddings raise AUC for DCNv2, FinalMLP and DIN; UniEmb gives the best AUC.
C10 (TransRec): TransRec beats TFS on the target (paired test) and the gain grows as target data shrinks.
C11 (TransRec): end-to-end beats frozen features, for TransRec and for TFS.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmark.reporting.claims import Claim, check_claims
from benchmark.reporting.ranking import check_c9
from benchmark.reporting.transfer import transfer_claims
from benchmark.store.records import RankingRecord

# --- C9 ---------------------------------------------------------------------------------------------------

PAPER_ROW = {"none": "none", "vqrec": "VQRec", "uniembedding": "UniEmb", "item2vec": "Item2Vec"}
#: AUC per model and embedding: every embedding raises AUC, UniEmb the most (C9 holds)
C9_BASE = {m: {"none": 0.70, "vqrec": 0.72, "uniembedding": 0.75} for m in ("dcnv2", "finalmlp", "din")}


def ranking(tmp: Path, aucs: dict[str, dict[str, float]]) -> list[RankingRecord]:
    """One seed per (model, embedding) cell with the given AUC; DeLong reads the same test rows for all."""
    rng = np.random.default_rng(0)
    labels = np.tile([0.0, 1.0], 20)
    records = []
    for model, row in aucs.items():
        for emb, auc in row.items():
            key = f"{model}-{emb}"
            (tmp / "rk" / key).mkdir(parents=True)
            np.save(tmp / "rk" / key / "test_labels.npy", labels)
            np.save(tmp / "rk" / key / "test_scores.npy", rng.random(len(labels)))
            records.append(RankingRecord(
                run_key=key, suite="rk", model=model, embedding=emb, embedding_display=PAPER_ROW[emb],
                paper_row=PAPER_ROW[emb], seed=0, embedding_seed=0, scale="tiny", dataset={}, manifest_hash="m",
                ctr={}, embedding_source={} if emb == "none" else {"stop_reason": "converged"},
                metrics={"auc": auc, "logloss": 0.5}, config={},
                info={"training": {"stop_reason": "converged"}}))
    return records


def c9(tmp: Path, aucs: dict[str, dict[str, float]]) -> Claim:
    return check_c9(ranking(tmp, aucs), tmp)


def changed(**cells: float) -> dict[str, dict[str, float]]:
    """C9_BASE with cells "model__embedding" = AUC changed (a value of None drops the cell)."""
    out = {m: dict(row) for m, row in C9_BASE.items()}
    for name, auc in cells.items():
        model, emb = name.split("__")
        if auc is None:
            out[model].pop(emb)
        else:
            out[model][emb] = auc
    return {m: row for m, row in out.items() if row}


@pytest.mark.parametrize(("aucs", "expected"), [
    (changed(), "holds"),
    (changed(din__vqrec=0.69), "fails"),  # one embedding lowers one model's AUC
    (changed(finalmlp__vqrec=0.76), "fails"),  # UniEmb not the best for one model
    (changed(dcnv2__item2vec=0.80), "fails"),  # another embedding (not a paper row) beats UniEmb
    (changed(din__none=None, din__vqrec=None, din__uniembedding=None), "not run"),  # DIN not run
    (changed(din__none=None, din__vqrec=None, din__uniembedding=None, dcnv2__vqrec=0.69), "fails"),
    (changed(din__uniembedding=None), "not run"),  # UniEmb's DIN cell missing: UniEmb best there is unknown
    (changed(dcnv2__uniembedding=None, finalmlp__uniembedding=None, din__uniembedding=None), "not run"),
    (changed(dcnv2__none=None, finalmlp__none=None, din__none=None), "not run"),  # no w/o Emb. cells
])
def test_c9_verdict(tmp_path: Path, aucs, expected) -> None:
    claim = c9(tmp_path, aucs)
    assert claim.status == expected, claim.evidence


def test_c9_evidence_names_the_gains_and_the_model_where_uniemb_is_not_best(tmp_path: Path) -> None:
    claim = c9(tmp_path, changed(finalmlp__vqrec=0.76))
    assert "FinalMLP: best is VQRec, not UniEmb" in claim.evidence and "DCNv2 UniEmb +0.0500" in claim.evidence


# --- C10 and C11 ------------------------------------------------------------------------------------------

CFG = {"min_paired_cases": 10, "min_seeds": 2, "target_fractions": [0.5, 1.0], "source_fractions": [1.0]}
#: rank of the target item in every test case, per (method, end_to_end), target share 100%:
#: TransRec (1) beats TFS (3); end-to-end beats frozen (50) for both. C10 and C11 hold.
RANKS = {("transrec", True): 1, ("tfs", True): 3, ("transrec", False): 50, ("tfs", False): 50}
#: NDCG@10 (percent) of TransRec and TFS at target share 50%: gain 200% > 100% at 100% share (C10's trend)
HALF = (150.0, 50.0)


def ndcg10(ranks: np.ndarray) -> float:
    return float(100 * np.where(ranks <= 10, 1 / np.log2(ranks + 1), 0).mean())


def transfer(tmp: Path, seeds: int = 2, cases: int = 20, ranks: dict | None = None,
             half: tuple[float, float] = HALF, frozen_seeds: int | None = None) -> list[dict]:
    """Transfer condition records (TransRec src 100%, TFS; target 50% / 100%; frozen at 100%)."""
    ranks = {**RANKS, **(ranks or {})}
    records = []
    for seed in range(seeds):
        for (method, e2e), rank in ranks.items():
            if not e2e and seed >= (seeds if frozen_seeds is None else frozen_seeds):
                continue
            for tf in (0.5, 1.0) if e2e else (1.0,):
                r = np.broadcast_to(np.asarray(rank), (cases,)).astype(np.int32)
                folder = tmp / f"{method}-{e2e}-{tf}-{seed}"
                folder.mkdir(parents=True)
                np.save(folder / "next_item_ranks.npy", r)
                nd = ndcg10(r) if tf == 1.0 else half[method == "tfs"]
                records.append({"condition": {"method": method, "seed": seed, "end_to_end": e2e, "target_fraction": tf,
                                              "source_fraction": 1.0 if method == "transrec" else None},
                                "transfer": CFG, "next_item": {"all": {"NDCG@10": nd}}, "folder": str(folder),
                                "key": folder.name, "stats": {"training": {"stop_reason": "converged"}}})
    return records


def transfer_verdicts(records: list[dict]) -> dict[str, str]:
    return {c.cid: c.status for c in transfer_claims(records)}


#: one of 20 cases better, the rest tied: TransRec ahead on average, Wilcoxon p = 1
ONE_CASE_BETTER = [1] + [3] * 19


@pytest.mark.parametrize(("kw", "expected"), [
    ({}, "holds"),
    ({"ranks": {("transrec", True): 5}}, "fails"),  # TransRec worse than TFS
    ({"ranks": {("transrec", True): 3}}, "fails"),  # TransRec = TFS
    ({"ranks": {("transrec", True): ONE_CASE_BETTER}}, "fails"),  # ahead but not significantly
    ({"half": (60.0, 50.0)}, "fails"),  # gain 20% at half the target data < 100% at all of it
    ({"half": (float("nan"), 50.0)}, "fails"),  # trend unreadable (a share without a value)
    ({"seeds": 1}, "not run"),  # fewer seeds than min_seeds
    ({"cases": 8}, "not run"),  # fewer target cases than a paired test needs
])
def test_c10_verdict(tmp_path: Path, kw, expected) -> None:
    assert transfer_verdicts(transfer(tmp_path, **kw))["C10"] == expected


def test_c10_is_not_run_when_a_step_cap_hides_the_trend_and_fails_when_tfs_wins(tmp_path: Path) -> None:
    records = transfer(tmp_path)
    for r in records:  # 2 steps x 4 sequences per epoch, fewer than the 10 sequences of either share
        r.update(method_config={"max_steps_per_epoch": 2, "batch_size": 4}, target_train_sequences=10)
    assert transfer_verdicts(records)["C10"] == "not run"
    for r in records:
        if r["condition"]["method"] == "transrec":
            r["folder"] = next(x["folder"] for x in records if x["condition"]["method"] == "tfs"
                               and x["condition"]["end_to_end"] and x["condition"]["seed"] == r["condition"]["seed"]
                               and x["condition"]["target_fraction"] == 1.0)
    assert transfer_verdicts(records)["C10"] == "fails"  # TransRec = TFS: fails whatever the trend


@pytest.mark.parametrize(("kw", "expected"), [
    ({}, "holds"),
    ({"ranks": {("transrec", False): 1}}, "fails"),  # TransRec: frozen = end-to-end
    ({"ranks": {("tfs", False): 2}}, "fails"),  # TFS: frozen better than end-to-end
    ({"ranks": {("transrec", False): 1, ("tfs", False): 2}}, "fails"),
    ({"ranks": {("tfs", False): [3] * 19 + [50]}}, "fails"),  # TFS end-to-end ahead on one case only
    ({"frozen_seeds": 1}, "not run"),  # frozen runs with fewer seeds than min_seeds
    ({"cases": 8}, "not run"),
])
def test_c11_verdict(tmp_path: Path, kw, expected) -> None:
    assert transfer_verdicts(transfer(tmp_path, **kw))["C11"] == expected


def test_c11_fails_when_one_method_fails_even_if_the_other_is_not_run(tmp_path: Path) -> None:
    records = transfer(tmp_path, ranks={("transrec", False): 1})
    records = [r for r in records if not (r["condition"]["method"] == "tfs" and not r["condition"]["end_to_end"])]
    claim = next(c for c in transfer_claims(records) if c.cid == "C11")
    assert claim.status == "fails" and "TFS: 0 seed(s)" in claim.evidence
    records = [r for r in transfer(tmp_path / "b") if r["condition"]["method"] == "transrec" or r["condition"]["end_to_end"]
               or r["condition"]["seed"] == 0]  # TFS frozen: one seed
    assert transfer_verdicts(records)["C11"] == "not run"  # TransRec holds, TFS undetermined


# --- the matching report's claims table takes C9..C11 from those suites as they are -----------------------

@pytest.mark.parametrize("status", ["holds", "fails", "not run"])
def test_check_claims_reports_c9_c10_c11_as_the_suites_gave_them(status) -> None:
    given = [Claim(cid, "text", status, f"{cid} evidence") for cid in ("C9", "C10", "C11")]
    out = {c.cid: c for c in check_claims([], None, transfer=given[1:], c9=given[0])}
    assert [out[c].status for c in ("C9", "C10", "C11")] == [status] * 3
    assert out["C10"].evidence == "C10 evidence"


def test_c9_is_inconclusive_when_a_cell_did_not_converge(tmp_path: Path) -> None:
    records = ranking(tmp_path, changed())
    records[1].info = {"training": {"stop_reason": "max_epochs"}}
    claim = check_c9(records, tmp_path)
    assert claim.status.startswith("inconclusive (not converged: ") and "max_epochs" in claim.status


def test_c9_is_inconclusive_when_the_embeddings_of_a_row_did_not_converge(tmp_path: Path) -> None:
    """The matching run that made a row's embeddings is a deciding run of C9 too."""
    records = ranking(tmp_path, changed())
    for r in records:
        if r.embedding == "uniembedding":
            r.embedding_source = {"stop_reason": "max_epochs"}
    claim = check_c9(records, tmp_path)
    assert claim.status.startswith("inconclusive (not converged: uniembedding embeddings (matching seed 0): max_epochs")
    for r in records:
        if r.embedding == "uniembedding":
            r.embedding_source = {"suite": "xmarket-matching", "run_key": "gone"}  # older cell, run not on disk
    assert "uniembedding embeddings (matching seed 0): not recorded" in check_c9(records, tmp_path).status


def test_c10_c11_are_inconclusive_when_a_transrec_condition_did_not_converge(tmp_path: Path) -> None:
    records = transfer(tmp_path)
    assert transfer_verdicts(records)["C10"] == "holds"
    next(r for r in records if r["condition"]["method"] == "transrec")["stats"] = {}  # no budget recorded
    verdicts = transfer_verdicts(records)
    assert verdicts["C10"].startswith("inconclusive (not converged: transrec") and "not recorded" in verdicts["C10"]
    assert verdicts["C11"].startswith("inconclusive")


def _with_source_shares(records: list[dict], best: dict[float, float]) -> list[dict]:
    """Adds a 20 % source share and each share's source pretraining curve (same validation cases, best score ``best``)."""
    out = []
    for r in records:
        c = r["condition"]
        r["transfer"] = {**CFG, "source_fractions": sorted(best)}
        out.append(r)
        if c["method"] != "transrec" or not c["end_to_end"] or c["target_fraction"] != 1.0:
            continue
        for sf in sorted(best):
            rec = r if sf == 1.0 else {**r, "condition": {**c, "source_fraction": sf}, "key": f"{r['key']}-{sf}"}
            rec["stats"] = {"stages": [{"stage": 2, "tag": "-source", "sequences": int(100 * sf), "batch_size": 4,
                                        "max_steps_per_epoch": int(10 * sf), "examples_per_epoch": int(40 * sf),
                                        "cases": 50, "valid_every_steps": 10}],
                            "training": {"stop_reason": "converged", "stages": [
                                {"stage": "stage2-source", "stop_reason": "converged", "curve": [[10, best[sf]]]},
                                {"stage": "stage2-target", "stop_reason": "converged", "curve": [[10, 0.1]]}]}}
            if sf != 1.0:
                out.append(rec)
    return out


def test_c10_and_c11_are_inconclusive_when_the_full_source_pretraining_stopped_below_a_smaller_share(tmp_path: Path):
    fine = _with_source_shares(transfer(tmp_path / "a"), {0.2: 0.04, 1.0: 0.06})
    assert transfer_verdicts(fine) == {"C10": "holds", "C11": "holds"}
    short = _with_source_shares(transfer(tmp_path / "b"), {0.2: 0.06, 1.0: 0.04})
    verdicts = transfer_verdicts(short)
    assert all(v.startswith("inconclusive") and "source pretraining at 100 %" in v for v in verdicts.values())


def _with_popularity(records: list[dict], tmp: Path, ranks: list[int]) -> list[dict]:
    """Adds Popularity on the target (the competence floor), one record per seed."""
    for seed in sorted({r["condition"]["seed"] for r in records}):
        folder = tmp / f"popularity-{seed}"
        folder.mkdir(parents=True)
        np.save(folder / "next_item_ranks.npy", np.asarray(ranks, dtype=np.int32))
        records.append({"condition": {"method": "popularity", "seed": seed, "end_to_end": True, "target_fraction": 1.0,
                                      "source_fraction": None}, "transfer": CFG, "folder": str(folder),
                        "next_item": {"all": {"NDCG@10": ndcg10(np.asarray(ranks))}}, "key": folder.name,
                        "stats": {"training": {"stop_reason": "untrained"}}})
    return records


def test_a_claim_deciding_with_a_condition_not_above_popularity_is_inconclusive(tmp_path: Path) -> None:
    # Popularity misses every case (rank 20): TransRec and TFS are above it, the frozen variants (rank 50) are not
    verdicts = transfer_verdicts(_with_popularity(transfer(tmp_path / "a"), tmp_path / "a", [20] * 20))
    assert verdicts["C10"] == "holds"
    assert verdicts["C11"].startswith("inconclusive (not competent: ") and "TFS Frozen (HR@10 0.00 vs Popularity" in verdicts["C11"]
    # Popularity hits every case in its top 10 (rank 2), as TFS does (rank 3): TFS is not above the floor
    verdicts = transfer_verdicts(_with_popularity(transfer(tmp_path / "b"), tmp_path / "b", [2] * 20))
    assert verdicts["C10"].startswith("inconclusive (not competent: TFS (HR@10 100.00 vs Popularity 100.00")
    assert "TransRec (" in verdicts["C10"]  # rank 1: the same HR@10, not above either
