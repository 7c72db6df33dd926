"""Transfer early stopping across data shares (``transfer.validation: full``): one set of validation
cases per side, and one validation interval in optimizer steps, whatever the share.

Before it, a 20 % target share validated on its own ~130 cases every 20-step epoch (patience 3 =
60 steps) while 100 % validated on 300 cases every 100 steps: a smaller share stopped sooner, on
noisier cases, so Table 8 compared stopping rules as much as data.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from transfer_toy import toy_view

from benchmark.data.model import TrainView
from benchmark.data.validation import ValidationCarve, carve_validation
from benchmark.errors import ConfigError
from benchmark.features.model import ItemFeatures
from benchmark.plugin import RunContext
from benchmark.tasks.transfer.stages import (
    Condition,
    ShareViews,
    _TransRecFamily,
    domain_view,
    validate_transfer,
)
from methods.transrec.model import TransRec


def _view(n_users: int = 80) -> TrainView:
    return toy_view(n_users, n_target=8, seed=3, max_target_len=4)


def _by_user(view: TrainView) -> dict[int, list[int]]:
    s = view.sequences
    return {int(u): s.sequence(r).tolist() for r, u in enumerate(s.users)}


def test_every_share_validates_on_the_full_views_cases_and_trains_on_its_part_of_the_rest():
    view = _view()
    side = ShareViews(view, [2], seed=0, stream=2, fraction=0.3, max_cases=100, fixed=True)
    full, half = side.share(1.0), side.share(0.5)
    assert isinstance(full, ValidationCarve) and isinstance(half, ValidationCarve)
    assert len(half) == len(full) > 5
    np.testing.assert_array_equal(half.targets, full.targets)
    np.testing.assert_array_equal(half.histories.items, full.histories.items)
    # the 50 % share trains on the users of its own nested share, each without its held-out last item
    own = _by_user(domain_view(view, [2], 0.5, seed=0, stream=2))
    fit, rest = _by_user(half.fit), _by_user(full.fit)
    assert set(fit) == set(own) and len(own) < len(rest)
    assert all(fit[u] == rest[u] for u in fit)
    carved = {int(u) for u in view.single_domain_sequences().users[side.rows[full.rows]]}
    assert carved & set(fit), "some validation users are in the share"
    assert all(fit[u] == own[u][:-1] for u in carved & set(fit))  # held out: never trained on
    # at 100 % the cases are the ones the method would carve from the full view itself (results unchanged)
    own_carve = carve_validation(domain_view(view, [2], 1.0, seed=0, stream=2), 0.3, 0, 100)
    np.testing.assert_array_equal(full.targets, own_carve.targets)
    assert _by_user(full.fit) == _by_user(own_carve.fit)


def test_the_per_share_rule_is_still_there_and_a_bad_rule_is_refused():
    view = _view()
    side = ShareViews(view, [2], seed=0, stream=2, fraction=0.3, max_cases=100, fixed=False)
    assert isinstance(side.share(0.5), TrainView)
    section = {"source_domains": ["Books"], "target_domain": "Cell"}
    assert validate_transfer(section, ["Books", "Electronics", "Cell"])["validation"] == "full"
    with pytest.raises(ConfigError, match="transfer.validation"):
        validate_transfer({**section, "validation": "every"}, ["Books", "Electronics", "Cell"])


def _family(view: TrainView, epochs: int) -> _TransRecFamily:
    feats = ItemFeatures(items=view.items, text=np.random.default_rng(0).normal(size=(20, 6)).astype(np.float32),
                         text_encoder="toy")
    cfg = {**TransRec.default_config(), "dim": 8, "n_layers": 1, "n_heads": 2, "inner": 8, "max_len": 5,
           "end_to_end": False, "use_images": False, "stage1_epochs": 0, "epochs": epochs, "patience": 2,
           "batch_size": 8, "max_steps_per_epoch": 1000, "n_targets": 1, "valid_fraction": 0.2,
           "valid_max_cases": 100}
    return _TransRecFamily(SimpleNamespace(train=view, features=feats), SimpleNamespace(method_config=cfg),
                           RunContext(seed=0))


@pytest.mark.parametrize("fixed", [True, False])
def test_a_small_share_validates_every_full_view_epoch_of_steps(fixed):
    view = _view(160)
    fam = _family(view, epochs=3)
    side = ShareViews(view, [2], seed=0, stream=2, fraction=0.2, max_cases=100, fixed=fixed)
    full_steps = fam.model(False).stage2_steps_per_epoch(side.full_fit())
    m = fam.train(Condition("tfs", 0, None, 0.25, False), side, side, np.arange(12), np.arange(12, 20),
                  fixed_validation=fixed)
    stage = m.stats["stages"][-1]
    budget = m.stats["training"]
    steps_at = [s for s, _ in budget["curve"]]
    if fixed:
        share_steps = fam.model(False).stage2_steps_per_epoch(side.share(0.25).fit)
        assert full_steps >= 3 * share_steps
        every = -(-full_steps // share_steps)
        assert stage["valid_every_epochs"] == every and stage["cases"] == len(side.share(1.0))
        assert steps_at == [every * share_steps * (k + 1) for k in range(len(steps_at))]
        assert len(steps_at) <= 3 and stage["epochs"] == every * len(steps_at)  # the cap: 3 validations
    else:
        assert stage["valid_every_epochs"] == 1 and stage["epochs"] == len(steps_at) <= 3


def test_the_source_rule_sets_the_source_stage_2_only():
    """``transfer.source_patience`` / ``source_epochs``: TransRec's source stage 2 stops by them, the
    target stage by the method's own patience and cap (here: patience 2, a cap of 3 validations)."""
    view = _view(160)
    fam = _family(view, epochs=3)
    source = ShareViews(view, [0, 1], seed=0, stream=1, fraction=0.2, max_cases=100, fixed=True)
    target = ShareViews(view, [2], seed=0, stream=2, fraction=0.2, max_cases=100, fixed=True)
    m = fam.train(Condition("transrec", 0, 1.0, 1.0, False), source, target, np.arange(12), np.arange(12, 20),
                  source_rule={"patience": 7, "epochs": 9})
    src, tgt = (next(s for s in m.stats["stages"] if s["stage"] == 2 and s["tag"] == tag) for tag in ("-source", "-target"))
    assert (src["patience"], tgt["patience"]) == (7, 2)
    stages = {s["stage"]: s for s in m.stats["training"]["stages"]}
    assert len(stages["stage2-source"]["curve"]) > 3  # past the target's cap of 3 validations
    assert len(stages["stage2-source"]["curve"]) <= 9 and len(stages["stage2-target"]["curve"]) <= 3


def test_the_source_rule_rekeys_only_conditions_that_pretrain_transrec():
    """A changed source rule reruns TransRec's source-pretrained conditions; TFS, the ID baselines and
    the fine-tuning methods (their own recipes) keep their keys and finished results."""
    from benchmark.tasks.transfer.stages import _key, condition_cfg, conditions, pretrains_transrec

    section = {"source_domains": ["Books"], "target_domain": "Cell"}
    domains = ["Books", "Electronics", "Cell"]
    plain = validate_transfer(section, domains)
    ruled = validate_transfer({**section, "source_patience": 10, "source_epochs": 80}, domains)
    run = SimpleNamespace(as_dict=lambda: {"method": "x"})
    inputs = SimpleNamespace(split=SimpleNamespace(manifest_hash="m"), dataset=SimpleNamespace(fingerprint="f"))
    conds = [Condition("transrec", 0, 1.0, 1.0), Condition("transrec", 0, 0.2, 1.0, False),
             Condition("tfs", 0, None, 1.0), Condition("sasrec", 0, None, 1.0), Condition("unisrec", 0, 1.0, 1.0)]
    changed = [_key(c, run, inputs, plain) != _key(c, run, inputs, ruled) for c in conds]
    assert changed == [True, True, False, False, False]
    assert [pretrains_transrec(c) for c in conds] == changed
    assert "source_patience" not in condition_cfg(ruled) and condition_cfg(ruled, conds[0])["source_patience"] == 10
    # the competence floor (references) only adds conditions: every key stays
    floored = validate_transfer({**section, "source_patience": 10, "source_epochs": 80, "references": ["popularity"]},
                                domains)
    assert [_key(c, run, inputs, floored) for c in conds] == [_key(c, run, inputs, ruled) for c in conds]
    grid = conditions(floored, [0, 1], ["transrec", "popularity"])
    assert [c for c in grid if c.method == "popularity"] == [Condition("popularity", s, None, 1.0) for s in (0, 1)]
    with pytest.raises(ConfigError, match="transfer.source_patience"):
        validate_transfer({**section, "source_patience": 0}, domains)
    with pytest.raises(ConfigError, match="transfer.source_epochs"):
        validate_transfer({**section, "source_epochs": 2.5}, domains)
