"""Transfer budgets: step caps scale with the data share, the report checks both caps, one stopping rule."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from transfer_toy import toy_view

from benchmark import registry
from benchmark.config import load_suite_file
from benchmark.data.model import TrainView
from benchmark.features.model import ItemFeatures
from benchmark.grid.plan import plan
from benchmark.plugin import RunContext
from benchmark.reporting.transfer_budget import capped_shares, condition_stop, share_table, stopped_short
from benchmark.tasks.transfer.stages import Condition, ShareViews, _TransRecFamily, share_cap
from methods.transrec.model import TransRec


def _family(cap: int = 4, batch: int = 2) -> tuple[_TransRecFamily, TrainView]:
    view = toy_view()
    feats = ItemFeatures(items=view.items, text=np.random.default_rng(0).normal(size=(16, 6)).astype(np.float32),
                         text_encoder="toy")
    cfg = {**TransRec.default_config(), "dim": 8, "n_layers": 1, "n_heads": 2, "inner": 8, "max_len": 5,
           "end_to_end": False, "use_images": False, "stage1_epochs": 1, "epochs": 1, "batch_size": batch,
           "max_steps_per_epoch": cap, "target_max_steps_per_epoch": cap, "n_targets": 1, "valid_fraction": 0.0}
    fam = _TransRecFamily(SimpleNamespace(train=view, features=feats), SimpleNamespace(method_config=cfg),
                          RunContext(seed=0))
    return fam, view


def _side(view: TrainView, codes: list[int], stream: int) -> ShareViews:
    """A side under the per-share rule (``validation: share``): each share is its own view."""
    return ShareViews(view, codes, seed=0, stream=stream, fraction=0.0, max_cases=100, fixed=False)


def _source_seen(model: TransRec) -> int:
    return sum(s["examples_seen"] for s in model.stats["training"]["stages"] if s["stage"].endswith("-source"))


def test_share_cap_scales_the_full_share_cap_and_rounds_up():
    assert [share_cap(45, f) for f in (0.2, 0.5, 1.0)] == [9, 23, 45]  # 45 x 0.2 is 9.000000000000002 in floats
    assert share_cap(100, 0.6) == 60 and share_cap(4, 0.2) == 1 and share_cap(1, 0.01) == 1


def test_two_source_shares_train_on_different_amounts_under_a_cap_both_exceed():
    """A cap of 4 steps x 2 sequences, below both shares' source sequences: 50 % trains on half as many per epoch."""
    fam, view = _family(cap=4, batch=2)
    src_pool, tgt_pool = np.arange(12), np.arange(12, 16)
    source, target = _side(view, [0, 1], 1), _side(view, [2], 2)
    assert len(source.share(0.5).sequences) > 2 * 4  # both shares hold more than the 100 % cap's 8 sequences
    seen = {}
    for share in (0.5, 1.0):
        m = fam.train(Condition("transrec", 0, share, 1.0, False), source, target, src_pool, tgt_pool,
                      fixed_validation=False)
        stage1 = next(s for s in m.stats["stages"] if s["stage"] == 1)
        seen[share] = (stage1["max_steps_per_epoch"], stage1["examples_per_epoch"], _source_seen(m))
    assert seen[0.5] == (2, 4, 4 + 4)  # stage 1 + stage 2, one epoch each, 2 steps x 2 sequences
    assert seen[1.0] == (4, 8, 8 + 8)
    # the target cap scales with the target share the same way
    m = fam.train(Condition("tfs", 0, None, 0.5, False), source, target, src_pool, tgt_pool, fixed_validation=False)
    assert m.stats["stages"][-1]["max_steps_per_epoch"] == 2


def test_a_condition_reusing_the_source_pretraining_reports_its_source_steps():
    fam, view = _family()
    source, target = _side(view, [0, 1], 1), _side(view, [2], 2)
    budgets = []
    for tf in (1.0, 0.5):
        m = fam.train(Condition("transrec", 0, 1.0, tf, False), source, target, np.arange(12), np.arange(12, 16),
                      fixed_validation=False)
        budgets.append([(s["stage"], s["optimizer_steps"]) for s in m.stats["training"]["stages"]])
    assert budgets[0][:2] == budgets[1][:2] and [s for s, _ in budgets[1]] == ["stage1-source", "stage2-source",
                                                                             "stage2-target"]
    assert m.stats["stages"][0]["reused"] is True


def _rec(share: float, kind: str, per_epoch: int, sequences: int, cap: int, seen: int = 10, seed: int = 0,
         best: float = 0.1, every: int | None = None) -> dict:
    tag = f"-{kind}"
    stages = [{"stage": n, "tag": tag, "sequences": sequences, "max_steps_per_epoch": cap, "batch_size": 4,
               "examples_per_epoch": per_epoch, "cases": 50, "valid_every_steps": every, "patience": 3}
              for n in ((1, 2) if kind == "source" else (2,))]
    budgets = [{"stage": f"stage{st['stage']}{tag}", "examples_seen": seen, "optimizer_steps": 1,
                "stop_reason": "converged", "curve": [[1, best / 2], [2, best], [3, best / 3]]} for st in stages]
    cond = {"method": "transrec", "seed": seed, "end_to_end": True,
            "source_fraction": share if kind == "source" else 1.0, "target_fraction": share if kind == "target" else 1.0}
    return {"condition": cond, "method_config": {"batch_size": 4},
            "stats": {"stages": stages, "training": {"stop_reason": "converged", "stages": budgets}}}


@pytest.mark.parametrize("kind", ["source", "target"])
def test_the_report_flags_shares_a_cap_feeds_the_same_data_and_checks_scaled_ones(kind):
    fractions = [0.2, 0.5, 1.0]
    # a fixed cap of 2 steps x 4 sequences below every share: 8 sequences per epoch whatever the share
    fixed = [_rec(f, kind, per_epoch=8, sequences=int(100 * f), cap=2) for f in fractions]
    why = capped_shares(fixed, kind, fractions)
    assert "2 steps x 4 sequences" in why and "20% (20 sequences)" in why and "100% (100 sequences)" in why
    assert any("**Untestable here**" in line for line in share_table(fixed, kind, fractions))
    # scaled with the share: more data per epoch with every larger share
    scaled = [_rec(f, kind, per_epoch=int(40 * f), sequences=int(100 * f), cap=int(10 * f)) for f in fractions]
    assert capped_shares(scaled, kind, fractions) == ""
    assert any(line.startswith("Checked:") for line in share_table(scaled, kind, fractions))


def test_a_source_stage_capped_only_in_stage_1_is_flagged_too():
    fractions = [0.5, 1.0]
    recs = [_rec(f, "source", per_epoch=int(40 * f), sequences=int(100 * f), cap=int(10 * f)) for f in fractions]
    for r in recs:
        r["stats"]["stages"][0].update(max_steps_per_epoch=1, examples_per_epoch=4)
    assert "source pretraining epoch at 1 steps" in capped_shares(recs, "source", fractions)


def test_a_validated_source_stage_that_hit_its_cap_makes_the_condition_not_converged():
    rec = _rec(1.0, "source", 8, 100, 2)
    rec["stats"]["training"]["stages"].append({"stage": "stage2-target", "stop_reason": "converged", "curve": [[1, 0.2]]})
    assert condition_stop(rec) == "converged"
    rec["stats"]["training"]["stages"][1]["stop_reason"] = "max_epochs"  # stage2-source validated, ran to its cap
    assert condition_stop(rec) == "max_epochs (stage2-source)"
    rec["stats"]["training"]["stages"][1]["curve"] = []  # a fixed stage without validation is not a missed stop
    assert condition_stop(rec) == "converged"


@pytest.mark.parametrize("scale", ["tiny", "small"])
def test_every_trained_transfer_method_stops_by_the_same_rule(scale):
    """TransRec/TFS, the three ID references and UniSRec's fine-tuning: their patience, a cap well above it."""
    runs = {r.method: r.method_config for r in plan("xmarket-transfer", scale=scale, seeds=[0])}
    epochs = {"transrec": "epochs", "gru4rec": "epochs", "nextitnet": "epochs", "sasrec": "epochs",
              "unisrec": "finetune_epochs"}
    # GRU4Rec / NextItNet at small: RecBole's stopping_step 10 (patience 3 epochs of ~10 steps stopped them on the
    # popularity plateau)
    patience = {m: 10 if scale == "small" and m in ("gru4rec", "nextitnet") else 3 for m in epochs}
    for method, key in epochs.items():
        cfg = runs[method]
        assert cfg["patience"] == patience[method] and int(cfg[key]) >= 10 * cfg["patience"], (method, cfg["patience"], cfg[key])
    # TransRec's source pretraining: RecBole's stopping_step (10), its cap 8x that (transfer.source_*)
    section = load_suite_file(registry.suite_path("xmarket-transfer"))["transfer"]
    assert section["source_patience"] == 10 and section["source_epochs"] >= 8 * section["source_patience"]


def _shares(bests: dict[float, list[float]], kind: str = "source", every: int | None = 10) -> list[dict]:
    return [_rec(f, kind, per_epoch=int(40 * f), sequences=int(100 * f), cap=int(10 * f), seed=seed, best=b, every=every)
            for f, per_seed in bests.items() for seed, b in enumerate(per_seed)]


def test_a_larger_share_that_stopped_below_every_seed_of_a_smaller_one_is_flagged_under_trained():
    fractions = [0.2, 1.0]
    # the 100 % share's pretraining stopped at a mean best of 0.04, every 20 % seed reached >= 0.06
    short = _shares({0.2: [0.066, 0.062, 0.071], 1.0: [0.040, 0.025, 0.054]})
    why = stopped_short(short, "source", fractions)
    assert why.startswith("the 100% source share's source pretraining") and "mean best 0.0397" in why
    assert "0.0660 / 0.0620 / 0.0710" in why and "same 50 validation cases" in why
    assert any("**Under-trained**" in line for line in share_table(short, "source", fractions))
    assert any("0.0400 / 0.0250 / 0.0540" in line and "| 10 steps, patience 3 |" in line
               for line in share_table(short, "source", fractions))
    # one seed of the smaller share below the larger share's mean: seed noise, not flagged
    assert stopped_short(_shares({0.2: [0.066, 0.030, 0.071], 1.0: [0.040, 0.025, 0.054]}), "source", fractions) == ""
    # more data, higher best: fine
    assert stopped_short(_shares({0.2: [0.04, 0.05, 0.045], 1.0: [0.06, 0.07, 0.065]}), "source", fractions) == ""


def test_shares_validated_on_their_own_cases_are_not_compared():
    # the per-share rule (no valid_every_steps): each share's own carve-out, so the scores are not comparable
    recs = _shares({0.2: [0.066, 0.062, 0.071], 1.0: [0.040, 0.025, 0.054]}, every=None)
    assert stopped_short(recs, "source", [0.2, 1.0]) == ""
