"""VQ-Rec (methods.md 4, 15): faiss codes, offsets, re-assignment permutations, the loss, the method."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.data.model import TrainView
from benchmark.errors import ConfigError
from benchmark.features.model import ItemFeatures
from benchmark.plugin import RunContext
from methods.shared.training import STOP_REASONS
from methods.vqrec import VQRec
from methods.vqrec.codes import build_codes, decode
from methods.vqrec.model import VQRecNet, fake_codes, gumbel_sinkhorn, pretrain_loss, round_permutation

N_TRAIN, N_COLD, WIDTH = 300, 12, 64  # the PQ needs >= 256 training items; 64 = 32 sub-vectors of 2


def toy_features(seed: int = 0, width: int = WIDTH) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, width))
    labels = np.arange(N_TRAIN + N_COLD) % 6
    return (centres[labels] + 0.5 * rng.normal(size=(N_TRAIN + N_COLD, width))).astype(np.float32)


@pytest.fixture(scope="module")
def pq():
    feat = toy_features()
    mask = np.arange(len(feat)) < N_TRAIN
    rng = np.random.default_rng(1)
    mask = mask[rng.permutation(len(mask))]  # training items scattered among the rows
    return feat, mask, build_codes(feat, mask, opq_niter=2)


def test_codes_are_the_index_codes_and_reconstruct_the_features(pq) -> None:
    import faiss

    feat, mask, codes = pq
    assert codes.codes.shape == (len(feat), 32) and codes.n_train == N_TRAIN
    ivf = faiss.extract_index_ivf(codes.index)
    ivf.make_direct_map()
    own = np.stack([codes.index.reconstruct(int(i)) for i in range(len(feat))])  # faiss's reconstruction by id
    np.testing.assert_allclose(decode(codes.index, codes.raw), own, atol=1e-4)  # our codes, row by row
    err = ((feat - own) ** 2).sum(1) / (feat**2).sum(1)
    shuffled = ((feat - own[np.roll(np.arange(len(feat)), 7)]) ** 2).sum(1) / (feat**2).sum(1)
    assert err.mean() < 0.5 * shuffled.mean()  # within PQ error, far below a wrong row mapping
    assert err[~mask].mean() < 0.5 * shuffled[~mask].mean()  # cold items coded by the trained index too


def test_polysemous_training_only_relabels_the_codes(pq) -> None:
    """Without polysemous training the PQ quantises as well (its centroids just carry other labels)."""
    feat, mask, codes = pq
    plain = build_codes(feat, mask, opq_niter=2, polysemous=False)

    def error(c):
        return float((((feat - decode(c.index, c.raw)) ** 2).sum(1) / (feat**2).sum(1)).mean())

    assert error(plain) == pytest.approx(error(codes), rel=0.1)
    assert not (plain.raw == codes.raw).all()  # relabelled, not the same codes


def test_codes_are_shifted_and_offset_per_sub_codebook(pq) -> None:
    _, _, codes = pq
    k = np.arange(32)
    np.testing.assert_array_equal(codes.codes, codes.raw + 1 + k[None, :] * 257)
    assert (codes.codes >= 1 + k * 257).all() and (codes.codes <= 256 + k * 257).all()
    assert codes.n_codes == 32 * 257


def test_width_not_a_multiple_of_32_is_a_config_error() -> None:
    view, features = toy_view(width=100)
    with pytest.raises(ConfigError, match=r"minilm.*100-d"):
        VQRec().fit(view, features, config(), RunContext(seed=0))


def test_rounding_keeps_a_permutation() -> None:
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(4, 257, 257, generator=gen)
    soft = gumbel_sinkhorn(scores, n_iters=3, temp=0.7, generator=gen)
    assert torch.allclose(soft.sum(1), torch.ones(4, 257), atol=1e-4)  # columns normalised last
    hard = round_permutation(soft, "hungarian")
    assert ((hard == 0) | (hard == 1)).all()
    assert (hard.sum(1) == 1).all() and (hard.sum(2) == 1).all()  # a bijection per sub-codebook
    top1 = round_permutation(soft, "top1")
    assert (top1.sum(2) == 1).all()  # one column per row, but columns may collide (the code's rule)


def test_reassignment_permutes_rows_within_each_sub_codebook() -> None:
    torch.manual_seed(0)
    codes = np.array([[1, 258], [2, 259]])
    net = VQRecNet(codes, n_sub=2, ksub=256, cfg=config(dim=8))
    perms = net.permutations(n_iters=3, temp=0.7, rounding="hungarian", generator=torch.Generator().manual_seed(3))
    table = net.permuted_table(perms).detach()
    old = net.code_emb.weight.detach().reshape(2, 257, 8)
    for k in range(2):
        cols = perms[k].detach().argmax(1)
        assert sorted(cols.tolist()) == list(range(257))
        torch.testing.assert_close(table.reshape(2, 257, 8)[k], old[k][cols])
    (perms * torch.randn(perms.shape, generator=torch.Generator().manual_seed(4))).sum().backward()
    # straight-through: the scores get a gradient (the code's ceil would give none)
    assert net.trans_matrix.grad is not None and net.trans_matrix.grad.abs().sum() > 0


def test_pretraining_loss_matches_a_hand_computation() -> None:
    gen = torch.Generator().manual_seed(0)
    seq, pos, fake = torch.randn(3, 4, generator=gen), torch.randn(3, 4, generator=gen), torch.randn(3, 4, generator=gen)
    targets = torch.tensor([5, 7, 5])  # anchors 0 and 2 share a target
    tau = 0.5
    got = pretrain_loss(seq, pos, fake, targets, tau)
    s, v, f = (x / x.norm(dim=1, keepdim=True) for x in (seq, pos, fake))
    want = 0.0
    for b in range(3):
        denom = 0.0
        for c in range(3):
            same = c != b and targets[c] == targets[b]
            denom += float(np.exp(0.0 if same else float(s[b] @ v[c]) / tau))  # masked logit -> e^0
        denom += float(np.exp(float(s[b] @ f[b]) / tau))  # the hard negative
        want += -np.log(np.exp(float(s[b] @ v[b]) / tau) / denom)
    assert abs(float(got) - want / 3) < 1e-5


def test_fake_codes_stay_in_their_sub_codebook() -> None:
    codes = torch.tensor([[1, 258, 515]] * 2000)
    fake = fake_codes(codes, 0.75, 256, torch.Generator().manual_seed(0))
    base = torch.arange(3) * 257
    assert ((fake >= base + 1) & (fake <= base + 256)).all()
    changed = (fake != codes).float().mean()
    assert 0.72 < float(changed) < 0.76  # 0.75 minus the 1/256 chance of drawing the same code


def toy_view(width: int = WIDTH, seed: int = 0) -> tuple[TrainView, ItemFeatures]:
    """Users walk within one of six text clusters, so codes carry the next item's cluster."""
    rng = np.random.default_rng(seed)
    feat = toy_features(seed, width)
    labels = np.arange(len(feat)) % 6
    train_items = np.arange(N_TRAIN)
    seqs = []
    for u in range(240):
        pool = train_items[labels[train_items] == u % 6]
        seqs.append(rng.choice(pool, 6).tolist())
    seqs[0] = train_items.tolist()[:50]  # every training item appears at least once
    for s in range(50, N_TRAIN, 50):
        seqs[s // 50] = train_items.tolist()[s : s + 50]
    view = TrainView.from_sequences(seqs, item_domain=(np.arange(len(feat)) % 2).tolist(), domains=("A", "B"))
    return view, ItemFeatures(items=view.items, text=feat, text_encoder="minilm")


def config(**over: object) -> dict:
    c = VQRec.default_config()
    # polysemous training (the default, tested on the codes above) only relabels codes and is slow
    c.update(dim=32, inner=32, max_len=10, opq_niter=2, polysemous=False, pretrain_epochs=2, pretrain_batch_size=128,
             finetune_epochs=3, reassign_steps=1, finetune_batch_size=64, patience=2, valid_fraction=0.0)
    c.update(over)
    return c


def fit(seed: int = 0) -> VQRec:
    view, features = toy_view()
    method = VQRec()
    method.fit(view, features, config(), RunContext(seed=seed, workers=1))
    return method


def test_fit_is_deterministic_per_seed_and_gives_unit_vectors_for_every_item() -> None:
    a, b = fit(0), fit(0)
    emb = a.item_embeddings()
    assert emb.shape == (N_TRAIN + N_COLD, 32) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)  # cold items too
    np.testing.assert_array_equal(emb, b.item_embeddings())
    assert a.stats["baked"] and a.stats["baked_bijective"]
    assert "reused for fine-tuning" in a.stats["index"]
    t = a.stats["training"]  # valid_fraction 0: both stages run to their caps
    assert set(t) >= {"optimizer_steps", "examples_seen", "epochs", "best_epoch", "stop_reason", "curve", "stages"}
    assert [s["stage"] for s in t["stages"]] == ["pretrain", "finetune"]
    assert t["optimizer_steps"] > 0 and t["stop_reason"] == "no_validation" and t["epochs"] == 2 + 3
    assert t["stages"][0]["stop_reason"] in STOP_REASONS
    from benchmark.data.model import Histories
    hist = Histories(offsets=np.array([0, 3, 4]), items=np.array([0, 6, 12, 1], dtype=np.int32))
    users = a.user_embeddings(hist)
    assert users.shape == (2, 32)
    np.testing.assert_array_equal(users, b.user_embeddings(hist))


def test_window_anchors_carry_their_window_so_own_items_are_not_negatives() -> None:
    from methods.shared.sequence import windows

    view, features = toy_view()
    m = VQRec()
    m.fit(view, features, config(pretrain_epochs=0, finetune_epochs=0), RunContext(seed=0, workers=1))
    win = windows(view.sequences, 10)
    for seq, target, groups in m._anchors(win, 16, np.random.default_rng(0)):
        assert len(groups) == len(target) == len(seq)
        assert (torch.diff(groups) >= 0).all()  # anchors of one window are consecutive, one group each
        counts = torch.bincount(groups)
        assert counts.sum() == len(target) and (counts >= 1).all()
        break


def test_window_anchors_are_the_prefix_anchors() -> None:
    """``pretrain_examples: windows`` computes exactly the every-prefix examples, in fewer forwards."""
    from methods.shared.sequence import prefix_examples, windows

    view, features = toy_view()
    m = VQRec()
    m.fit(view, features, config(pretrain_epochs=0, finetune_epochs=0), RunContext(seed=0, workers=1))
    m.net.eval()
    s = view.sequences  # windows are exact for sequences of <= max_len + 1 items: keep those
    short = [s.items[s.offsets[i] : s.offsets[i + 1]].tolist() for i in range(len(s)) if s.lengths[i] <= 11]
    seqs = TrainView.from_sequences(short, item_domain=[0] * view.n_items, domains=("A",)).sequences
    pre, win = prefix_examples(seqs, 10), windows(seqs, 10)
    assert win.n_examples == len(pre) > 1000 and win.dropped == 0

    def anchors(ex, batch, buckets):  # (every anchor as (target, rounded vector), how many)
        with torch.no_grad():
            out = [(s, t) for s, t, _ in m._anchors(ex, batch, np.random.default_rng(0), buckets)]
        seq, tgt = torch.cat([s for s, _ in out]), torch.cat([t for _, t in out])
        return {(int(t), tuple(np.round(v.numpy(), 4))) for v, t in zip(seq, tgt, strict=True)}, len(tgt)

    ka, _ = anchors(pre, 10**6, False)
    kb, nb = anchors(win, 64, True)  # bucketed batches: the same windows, another order
    assert nb == win.n_examples and kb == ka


def test_windows_fit_is_deterministic_and_says_so() -> None:
    view, features = toy_view()
    runs = []
    for _ in range(2):
        m = VQRec()
        m.fit(view, features, config(pretrain_examples="windows", length_buckets=True), RunContext(seed=0, workers=1))
        runs.append(m)
    np.testing.assert_array_equal(runs[0].item_embeddings(), runs[1].item_embeddings())
    assert runs[0].stats["pretrain_example_form"] == "windows" and runs[0].stats["pretrain_epochs"] == 2
    assert runs[0].stats["training"]["stages"][0]["examples_seen"] == 2 * runs[0].stats["pretrain_examples"]
    with pytest.raises(ConfigError, match="pretrain_examples"):
        VQRec().fit(view, features, config(pretrain_examples="rows"), RunContext(seed=0, workers=1))


def test_dataset_without_text_is_skipped(tiny_suite_run, tmp_path) -> None:
    import dataclasses

    from benchmark.grid.plan import plan
    from benchmark.tasks.matching.runner import execute_run

    run, _, _ = tiny_suite_run
    no_text = dataclasses.replace(run.inputs, features=ItemFeatures(items=run.inputs.dataset.items))
    (cfg,) = plan("xmarket-matching", scale="tiny", methods=["vqrec"])
    record = execute_run(cfg, no_text, tmp_path / "results", tracker=None, progress=False)
    assert record.status == "skipped" and "text" in record.reason


def test_metadata() -> None:
    assert VQRec.supports_next_item() and VQRec.next_item_scoring == "cosine" and VQRec.paper_column == "VQRec"
    assert VQRec().display(toy_view()[1]) == "VQRec[minilm]"
    view = toy_view()[0]
    long_id = ItemFeatures(items=view.items, text=toy_features(), text_encoder="minilm:sentence-transformers/x@sha256:ab")
    assert VQRec().display(long_id) == "VQRec[minilm]"
