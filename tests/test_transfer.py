"""The transfer suite: config errors, source/target views, target cases, claim checks from records."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from benchmark.config import load_suite_file
from benchmark.data.model import Histories, Items, TrainView
from benchmark.errors import ConfigError
from benchmark.registry import suite_path
from benchmark.reporting.transfer import tables, transfer_claims
from benchmark.tasks.transfer.stages import conditions, domain_view, target_cases, validate_transfer

DOMAINS = ["us/Books", "us/Electronics", "us/Cell_Phones_and_Accessories"]
GOOD = {"source_domains": ["Books", "Electronics"], "target_domain": "Cell_Phones_and_Accessories",
        "source_fractions": [0.2, 1.0], "target_fractions": [0.5, 1]}


def test_shipped_suite_validates():
    suite = load_suite_file(suite_path("xmarket-transfer"))
    cfg = validate_transfer(suite["transfer"], suite["dataset"]["domains"].split(","))
    assert cfg["target_domain"] == "Cell_Phones_and_Accessories" and cfg["source_fractions"] == [0.2, 0.5, 1.0]


@pytest.mark.parametrize(("change", "key"), [
    ({"target_domain": "Books"}, "transfer.target_domain"),
    ({"source_domains": ["Books", "Toys"]}, "transfer.source_domains"),
    ({"target_domain": "Toys"}, "transfer.target_domain"),
    ({"source_fractions": [0.0, 1.0]}, "transfer.source_fractions"),
    ({"target_fractions": [1.5, 1.0]}, "transfer.target_fractions"),
    ({"target_fractions": [0.5]}, "transfer.target_fractions"),
    ({"source_fraction": 0.5}, "unknown key"),
])
def test_bad_transfer_config_is_a_config_error_naming_the_key(change, key):
    with pytest.raises(ConfigError, match=key):
        validate_transfer({**GOOD, **change}, DOMAINS)


def _view() -> TrainView:
    # items 0-3 Books (0), 4-5 Electronics (1), 6-9 Cell (2)
    dom = [0, 0, 0, 0, 1, 1, 2, 2, 2, 2]
    items = Items(domains=("Books", "Electronics", "Cell_Phones_and_Accessories"),
                  source_id=np.array([f"i{k}" for k in range(10)], dtype=object), domain=np.array(dom, dtype=np.int16))
    seqs = [[0, 6, 1, 7], [4, 5, 8], [6, 9], [2, 3], [0, 4, 6, 7, 1], [8, 9, 6], [1, 2, 3, 7], [5, 4]]
    return TrainView.from_sequences(seqs, dom, items=items)


def test_domain_views_are_single_domain_and_nested():
    view = _view()
    full = domain_view(view, [2], 1.0, seed=0, stream=2)
    assert set(view.item_domain[full.sequences.items]) == {2}
    assert len(full.sequences) == 6  # every user with a Cell item contributes one Cell sequence
    part = domain_view(view, [2], 0.5, seed=0, stream=2)
    whole = {tuple(s) for s in full.sequences}
    assert len(part.sequences) == 3 and {tuple(s) for s in part.sequences} <= whole
    assert part.item_train_count.sum() == len(part.sequences.items)
    src = domain_view(view, [0, 1], 1.0, seed=0, stream=1)
    assert set(view.item_domain[src.sequences.items]) <= {0, 1}


def test_target_cases_keep_only_target_domain_history_and_drop_empty_ones():
    view = _view()
    cases = SimpleNamespace(target_domain=np.array([2, 0, 2, 2]), target=np.array([7, 1, 9, 8]),
                            overlapped=np.array([True, True, False, True]))
    hist = Histories.from_lists([[0, 6, 1], [0], [4, 5], [6, 2, 9]])
    inputs = SimpleNamespace(split=SimpleNamespace(cases=cases, histories=hist), train=view)
    tc = target_cases(inputs, 2)
    assert tc.rows.tolist() == [0, 3]  # case 1 targets Books; case 2 has no Cell history
    assert [tc.histories.history(c).tolist() for c in range(2)] == [[6], [6, 9]]
    assert tc.pool.tolist() == [6, 7, 8, 9] and tc.local(tc.target).tolist() == [1, 2]


def test_grid_has_every_table_cell():
    cfg = validate_transfer({**GOOD, "id_baselines": ["sasrec"]}, DOMAINS)
    grid = conditions(cfg, [0], ["transrec", "sasrec"])
    labels = {c.label for c in grid}
    assert {"transrec src 1 tgt 1 s0", "tfs tgt 0.5 s0", "transrec src 0.2 tgt 1 s0",
            "transrec src 1 tgt 1 frozen s0", "tfs tgt 1 frozen s0", "sasrec tgt 1 s0"} <= labels
    assert len(grid) == 2 * 2 + 1 + 2 + 1


def _record(tmp: Path, method: str, seed: int, sf, tf, e2e: bool, ranks: np.ndarray, cfg: dict) -> dict:
    folder = tmp / f"{method}-{seed}-{sf}-{tf}-{e2e}"
    folder.mkdir()
    np.save(folder / "next_item_ranks.npy", ranks.astype(np.int32))
    hr = float(100 * (ranks <= 10).mean())
    nd = float(100 * np.where(ranks <= 10, 1 / np.log2(ranks + 1), 0).mean())
    metrics = {"all": {"HR@5": hr, "NDCG@5": nd, "HR@10": hr, "NDCG@10": nd, "n": len(ranks)}}
    return {"condition": {"method": method, "seed": seed, "source_fraction": sf, "target_fraction": tf,
                          "end_to_end": e2e}, "display": method, "transfer": cfg, "target_train_sequences": 10,
            "next_item": metrics, "item_to_item": metrics, "folder": str(folder), "key": folder.name,
            "stats": {"training": {"stop_reason": "converged"}}}  # else the verdicts are "inconclusive"


def test_claims_need_enough_cases_and_seeds_then_give_a_verdict(tmp_path: Path):
    cfg = validate_transfer({**GOOD, "min_paired_cases": 20}, DOMAINS)
    rng = np.random.default_rng(0)

    def grid(n: int, seeds: int, sub: str) -> list[dict]:
        (tmp_path / sub).mkdir()
        good, bad = rng.integers(1, 4, size=n), rng.integers(5, 40, size=n)
        recs = []
        for s in range(seeds):
            for tf in (0.5, 1.0):
                recs.append(_record(tmp_path / sub, "transrec", s, 1.0, tf, True, good, cfg))
                recs.append(_record(tmp_path / sub, "tfs", s, None, tf, True, bad if tf == 0.5 else bad // 2 + 1, cfg))
            recs.append(_record(tmp_path / sub, "transrec", s, 1.0, 1.0, False, bad, cfg))
            recs.append(_record(tmp_path / sub, "tfs", s, None, 1.0, False, bad, cfg))
        return recs

    few = {c.cid: c for c in transfer_claims(grid(8, 3, "few"))}
    assert few["C10"].status == "not run" and "only 8 target test cases" in few["C10"].evidence
    assert few["C11"].status == "not run"
    one_seed = {c.cid: c for c in transfer_claims(grid(50, 1, "seed"))}
    assert one_seed["C10"].status == "not run" and "needs 3" in one_seed["C10"].evidence
    full = grid(50, 3, "full")
    claims = {c.cid: c for c in transfer_claims(full)}
    assert claims["C10"].status == "holds", claims["C10"].evidence
    assert claims["C11"].status == "holds", claims["C11"].evidence
    header, rows = tables(full)["table8"]
    assert rows[0][0] == "50%" and float(rows[0][4]) > float(rows[1][4])  # gain larger with less data
    json.dumps(tables(full))
    # a preset whose per-epoch step cap is below every target share's sequences cannot show the trend
    for r in full:
        r["method_config"] = {"max_steps_per_epoch": 2, "batch_size": 4}
    capped = {c.cid: c for c in transfer_claims(full)}["C10"]
    assert capped.status == "not run" and "untestable" in capped.evidence and "2 steps x 4" in capped.evidence
    for r in full:
        r["method_config"] = {"max_steps_per_epoch": 5, "batch_size": 4}  # 20 >= 10 sequences: not capped
    assert {c.cid: c for c in transfer_claims(full)}["C10"].status == "holds"
    for r in full:  # stage 2 trains on the sequences with >= 2 items: the cap is read against those
        r["method_config"] = {"max_steps_per_epoch": 2, "batch_size": 4}
        r["stats"] = {"stages": [{"stage": 2, "tag": "-target", "sequences": 8}], "training": {"stop_reason": "converged"}}
    assert {c.cid: c for c in transfer_claims(full)}["C10"].status == "holds"
    for r in full:  # a cap on source pretraining only (target_max_steps_per_epoch lifts it on the target)
        r["method_config"] = {"max_steps_per_epoch": 1, "target_max_steps_per_epoch": 2, "batch_size": 4}
    assert {c.cid: c for c in transfer_claims(full)}["C10"].status == "holds"
    for r in full:
        r["method_config"] = {"max_steps_per_epoch": 100, "target_max_steps_per_epoch": 1, "batch_size": 4}
    assert {c.cid: c for c in transfer_claims(full)}["C10"].status == "not run"


def test_bad_transfer_suite_fails_before_any_work(tmp_path: Path):
    from benchmark.tasks.transfer.grid import run_transfer

    text = suite_path("xmarket-transfer").read_text().replace(
        "target_domain: Cell_Phones_and_Accessories", "target_domain: Books")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError, match="transfer.target_domain"):
        run_transfer(str(bad), scale="tiny", data_dir=tmp_path / "no-data", results_dir=tmp_path / "r",
                     echo=lambda s: None)
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_tiny_transfer_grid_runs_resumes_and_reports(tiny_data_dir: Path, tmp_path: Path):
    from benchmark.reporting.transfer import write_transfer_reports
    from benchmark.tasks.transfer.grid import run_transfer

    kw = {"scale": "tiny", "methods": ["transrec", "sasrec", "popularity"], "seeds": [0], "data_dir": tiny_data_dir,
          "results_dir": tmp_path / "r", "progress": False}
    lines: list[str] = []
    out = run_transfer("xmarket-transfer", echo=lines.append, **kw)
    records = sorted(out.glob("*/result.json"))
    assert len(records) == 3 + 3 + 2 + 2 + 1 + 1  # TransRec/TFS x 3 target shares, 2 source shares, frozen x 2,
    # SASRec, Popularity (the competence floor)
    rec = json.loads(records[0].read_text())
    assert rec["dataset"]["synthetic"] and rec["target_cases"] == len(np.load(records[0].parent / "next_item_ranks.npy"))
    again: list[str] = []
    run_transfer("xmarket-transfer", echo=again.append, **kw)
    assert sum("finished earlier" in s for s in again) == len(records)
    text = write_transfer_reports("xmarket-transfer", out, tmp_path / "reports")
    assert "Table 6" in text and "SYNTHETIC" in text and "small CNN" in text and "ResNet" not in text
    assert "| C10" in text and "needs 3" in text
    assert "Data: the SYNTHETIC XMarket twin" in text and "Paper (TN-mixed" in text
    assert f"| all | {rec['target_cases']} | " in text and "Noise: cases and 95 % CI half-widths of HR@10" in text
    # every condition trained to early stopping (the epoch counts are safety caps) and the tables say so
    trained = [json.loads(p.read_text()) for p in records]
    stops = [r["stats"]["training"]["stop_reason"] for r in trained if r["condition"]["method"] != "popularity"]
    assert set(stops) == {"converged"} and len(stops) == len(records) - 1, stops
    # Popularity is Table 6's last column and the floor of the competence table (TransRec, TFS, SASRec, frozen x 2)
    assert "### Competence against Popularity" in text and "minus Popularity's" in text
    competence = text.split("### Competence against Popularity")[1].split("###")[0]
    assert all(f"| {label} | " in competence for label in ("TransRec", "TFS", "IDRec (SASRec)", "TFS Frozen"))
    assert "| TransRec src 20% | 0 |" in text and "converged (all 1)" in text
    assert "Checked: every source share" in text and "Checked: every target share" in text
    assert next((tmp_path / "reports").rglob("training_budget.csv")).read_text().count("\n") == len(records) + 1
    assert next((tmp_path / "reports").rglob("learning_curves.png")).stat().st_size > 0
    assert "Validation curves: learning_curves.png" in text and "best valid NDCG@10 (per seed)" in text


@pytest.mark.slow
def test_finetune_methods_pretrain_on_the_source_and_the_others_are_skipped_with_a_reason(tiny_data_dir: Path,
                                                                                         tmp_path: Path):
    """UniSRec joins the grid through fit_transfer (source pretraining, target fine-tuning); VQ-Rec,
    which has no such recipe yet, is skipped with the reason, in the run's lines and in the report."""
    from benchmark.reporting.transfer import write_transfer_reports
    from benchmark.tasks.transfer.grid import run_transfer

    lines: list[str] = []
    out = run_transfer("xmarket-transfer", scale="tiny", methods=["unisrec", "vqrec"], seeds=[0],
                       data_dir=tiny_data_dir, results_dir=tmp_path / "r", progress=False, echo=lines.append)
    (rec_path,) = out.glob("*/result.json")
    rec = json.loads(rec_path.read_text())
    assert rec["condition"]["method"] == "unisrec" and rec["condition"]["source_fraction"] == 1.0
    st = rec["stats"]
    assert st["transfer"]["target_sequences"] == rec["target_train_sequences"]
    assert st["transfer"]["source_sequences"] > st["transfer"]["target_sequences"] > 0
    # pretraining read the source's sequences: more examples than fine-tuning on the smaller target
    assert st["pretrain_examples"] > st["finetune_examples"] > 0
    assert any("vqrec: SKIPPED" in s and "fit_transfer" in s for s in lines), lines
    text = write_transfer_reports("xmarket-transfer", out, tmp_path / "reports")
    assert "src->tgt" in text and "vqrec (not run: no source -> target recipe" in text


def test_a_conditions_result_does_not_depend_on_what_ran_before():
    from benchmark.features.model import ItemFeatures
    from benchmark.plugin import RunContext
    from benchmark.tasks.transfer.stages import Condition, _TransRecFamily
    from methods.transrec.model import TransRec

    view = _view()
    rng = np.random.default_rng(0)
    feats = ItemFeatures(items=view.items, text=rng.normal(size=(10, 6)).astype(np.float32), text_encoder="toy")
    cfg = {**TransRec.default_config(), "dim": 8, "n_layers": 1, "n_heads": 2, "inner": 8, "max_len": 5,
           "end_to_end": False, "use_images": False, "stage1_epochs": 1, "epochs": 2, "batch_size": 4,
           "max_steps_per_epoch": 2, "n_targets": 2, "valid_fraction": 0.0}
    run = SimpleNamespace(method_config=cfg)
    inputs = SimpleNamespace(train=view, features=feats)
    src_pool, tgt_pool = np.arange(6), np.arange(6, 10)
    tr = Condition("transrec", 0, 1.0, 1.0, False)
    tfs = Condition("tfs", 0, None, 1.0, False)
    whole = SimpleNamespace(share=lambda f: view)  # source and target: the whole toy view
    out = {}
    for order in ((tr, tfs), (tfs, tr)):
        ctx = RunContext(seed=0)
        fam = _TransRecFamily(inputs, run, ctx)
        for cond in order:
            ctx.seed_everything()
            m = fam.train(cond, whole, whole, src_pool, tgt_pool, fixed_validation=False)
            out.setdefault(cond.label, []).append(m.item_embeddings().copy())
    for label, (a, b) in out.items():
        np.testing.assert_array_equal(a, b, err_msg=label)
    assert not np.array_equal(out[tr.label][0], out[tfs.label][0])


def test_a_rerun_condition_replaces_its_older_record(tmp_path: Path):
    """Two records of one condition (a config change gave a new key): the tables and claims see the newest.

    The records are in the pre-schema-3 layout (``record.json`` with ``key``): older folders stay readable."""
    import os

    from benchmark.reporting.transfer import load_transfer

    base = {"dataset": {"label": "twin", "manifest_hash": "m"}, "scale": "small", "transfer": {"a": 1}}
    for i, (key, seed) in enumerate((("old", 0), ("new", 0), ("other", 1))):
        (tmp_path / key).mkdir()
        rec = {**base, "key": key, "condition": {"method": "tfs", "seed": seed, "source_fraction": None,
                                                   "target_fraction": 1.0, "end_to_end": True}}
        (tmp_path / key / "record.json").write_text(json.dumps(rec))
        os.utime(tmp_path / key / "record.json", (1000 + i, 1000 + i))
    assert [r["run_key"] for r in load_transfer(tmp_path)] == ["new", "other"]


def test_a_new_source_rule_keeps_tfs_and_drops_the_old_rules_transrec_records(tmp_path: Path):
    """TFS finished under the old section stays in the tables; a TransRec record under the old source
    rule does not (one rule per table), even for a condition the new rule has not rerun yet."""
    import os

    from benchmark.reporting.transfer import load_transfer

    base = {"dataset": {"label": "twin", "manifest_hash": "m"}, "scale": "small"}
    old, new = {"a": 1}, {"a": 1, "source_patience": 10}
    rows = (("tfs-old", "tfs", None, 1.0, old), ("tr-old", "transrec", 1.0, 1.0, old),
            ("tr60-old", "transrec", 1.0, 0.6, old), ("tr-new", "transrec", 1.0, 1.0, new))
    for i, (key, method, sf, tf, section) in enumerate(rows):
        (tmp_path / key).mkdir()
        rec = {**base, "key": key, "transfer": section, "condition": {
            "method": method, "seed": 0, "source_fraction": sf, "target_fraction": tf, "end_to_end": True}}
        (tmp_path / key / "record.json").write_text(json.dumps(rec))
        os.utime(tmp_path / key / "record.json", (1000 + i, 1000 + i))
    assert sorted(r["run_key"] for r in load_transfer(tmp_path)) == ["tfs-old", "tr-new"]


def test_listing_finetune_methods_keeps_every_condition_key():
    """finetune_methods only chooses which conditions exist: finished conditions keep their keys."""
    from types import SimpleNamespace

    from benchmark.tasks.transfer.stages import Condition, _key

    run = SimpleNamespace(as_dict=lambda: {"method": "transrec"})
    inputs = SimpleNamespace(split=SimpleNamespace(manifest_hash="m"), dataset=SimpleNamespace(fingerprint="f"))
    cfg = validate_transfer(GOOD, DOMAINS)
    cond = Condition("transrec", 0, 1.0, 1.0)
    listed = _key(cond, run, inputs, {**cfg, "finetune_methods": ["unisrec"]})
    assert listed == _key(cond, run, inputs, cfg)
    assert listed != _key(cond, run, inputs, {**cfg, "target_fractions": [1.0]} if cfg["target_fractions"] != [1.0]
                          else {**cfg, "min_seeds": 5})
