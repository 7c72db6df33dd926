"""The fit-bound bench's probe: per-step and per-validation FLOPs and CPU seconds from the optimizer-step hook."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from bench_fit_bound import Probe, last_stage, probing  # noqa: E402

B, N, VAL = 8, 32, 100_000  # batch, width, validation rows (a validation costs far more than a step)


def fake_fit(stage1_steps: int, epochs: int, per_epoch: int) -> int:
    """Two stages: ``stage1_steps`` steps of one optimizer, then epochs of ``per_epoch`` steps of another,
    each epoch ending with a validation ([VAL, N] @ [N, N], no gradient). Returns the steps it ran."""
    gen = torch.Generator().manual_seed(0)
    x, v = torch.randn(B, N, generator=gen), torch.randn(VAL, N, generator=gen)
    done = 0
    w1 = torch.randn(N, N, generator=gen, requires_grad=True)
    opt1 = torch.optim.SGD([w1], lr=1e-3)
    for _ in range(stage1_steps):
        (x @ w1).sum().backward()
        opt1.step()
        done += 1
    w = torch.randn(N, N, generator=gen, requires_grad=True)
    opt = torch.optim.SGD([w], lr=1e-3)
    for _ in range(epochs):
        for _ in range(per_epoch):
            opt.zero_grad()
            (x @ w).sum().backward()  # forward x @ w and backward x^T @ grad: 2 x 2 B N^2 FLOPs
            opt.step()
            done += 1
        with torch.no_grad():
            (v @ w).sum()  # 2 VAL N^2 FLOPs
    return done


def test_probe_counts_a_steps_and_a_validations_flops_and_stops_the_fit_after_its_window():
    probe = Probe(before=3, v1=5, v2=10)
    with probing(probe):
        fake_fit(stage1_steps=3, epochs=20, per_epoch=5)
    assert probe.complete() and len(probe.cpu) == 3 + 10 + 5 + 2  # cut short, not all 3 + 100 steps
    step, validation = probe.step_and_validation_flops()
    assert step == 4 * B * N * N
    assert validation == 2 * VAL * N * N
    step_s, validation_s, aligned = probe.step_and_validation_s()
    assert aligned and validation_s > 0 and step_s > 0
    assert probe.head_cpu() >= 0


def test_probe_flags_a_stage_boundary_that_is_not_where_the_budget_says():
    # the stored budget says 3 earlier steps, the fit runs 8: the validations still fall on the probe's
    # points (local 10 and 15 = steps 13 and 18), only the stage boundary (no new optimizer) tells
    probe = Probe(before=3, v1=10, v2=15)
    with probing(probe):
        fake_fit(stage1_steps=8, epochs=20, per_epoch=5)
    assert not probe.step_and_validation_s()[2]
    probe = Probe(before=8, v1=5, v2=10)
    with probing(probe):
        fake_fit(stage1_steps=8, epochs=20, per_epoch=5)
    assert probe.step_and_validation_s()[2]


def test_a_fit_that_ends_before_the_window_leaves_the_probe_incomplete_and_the_counter_closed():
    probe = Probe(before=0, v1=5, v2=10)
    with probing(probe):
        fake_fit(stage1_steps=0, epochs=2, per_epoch=5)
    assert not probe.complete() and probe.counter is None


def test_last_stage_reads_the_steps_before_it_from_the_stored_budget():
    training = {"stages": [{"optimizer_steps": 142}, {"optimizer_steps": 6600, "curve": [[75, 0.1]]}]}
    assert last_stage(training) == (142, training["stages"][1])
    assert last_stage({"optimizer_steps": 9, "curve": []}) == (0, {"optimizer_steps": 9, "curve": []})
