"""FLOPs and seconds per training batch of TransRec vs IDRec, in the shape of TransRec's Table 4.

Usage:
    PYTHONPATH=. python scripts/bench_transrec_flops.py [--images 13] [--texts 12] [--image-size 224]
        [--tokens 32] [--reps 2] [--threads 1]

The paper's batch: one user sequence of 13 images (3x224x224) and 12 news titles (32 tokens),
forward + backward + optimiser step. FLOPs are counted by ``torch.utils.flop_counter`` (matrix
products and convolutions; element-wise work is not counted), seconds are the mean wall time of
``--reps`` steps after one warm-up, on this machine (shared CPU: say so when quoting them), each
also as GFLOP/s and as a share of a plain fp32 GEMM's GFLOP/s measured in the same run (issue 25
item 5: which bound a step sits at).
Rows: IDRec (SASRec over item IDs, 25 positions), TransRec with full fine-tuning of the text and
image encoders (the paper's Table 4 setting), and TransRec as trained here (text: top layers over
cached frozen token states; image: layer3/4 only, or the small CNN from scratch). The text
encoder is the real all-MiniLM-L6-v2 (the paper: BERT-base); ResNet-18 is the architecture with
random weights (FLOPs and time do not depend on the weights). It prints figures; it is not a test.
"""

from __future__ import annotations

import argparse
import time

import torch
from benchtools import gemm_peak
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from methods.shared.sequence import SequenceEncoder
from methods.transrec.encoders import SmallCNN, TextTokenCache, TextTower, load_text_backbone

TITLES = ["wireless charger for phones with fast charging", "a short story collection"]


def measure(step, params: list[nn.Parameter], reps: int) -> tuple[float, float]:
    """(GFLOPs, seconds) of one training step (forward + backward + Adam)."""
    opt = torch.optim.Adam(params, lr=1e-4)

    def one() -> None:
        opt.zero_grad()
        step().backward()
        opt.step()

    one()  # warm-up
    with FlopCounterMode(display=False) as counter:
        one()
    t0 = time.perf_counter()
    for _ in range(reps):
        one()
    return counter.get_total_flops() / 1e9, (time.perf_counter() - t0) / reps


def user_encoder(dim: int = 256) -> SequenceEncoder:
    return SequenceEncoder(dim, 4, 4, 128, 0.1, 25, causal=False, pooling="last")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=13)
    ap.add_argument("--texts", type=int, default=12)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--n-items", type=int, default=133_107, help="IDRec's item table (paper source: 133,107)")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    n_seq = args.images + args.texts
    lengths = torch.tensor([n_seq])
    rows: list[tuple[str, float, float]] = []

    ids = nn.Embedding(args.n_items + 1, 64)
    sas = SequenceEncoder(64, 2, 2, 256, 0.5, 50)
    seq = torch.randint(1, args.n_items, (1, n_seq))
    rows.append(("IDRec (SASRec, item IDs)", *measure(
        lambda: (sas(ids(seq), lengths) @ ids.weight.T).logsumexp(-1).sum(), [*ids.parameters(), *sas.parameters()],
        args.reps)))

    tokenizer, model, ident = load_text_backbone("minilm")
    n_layers = len(model.encoder.layer)
    texts = [TITLES[k % 2] for k in range(args.texts)]
    tok = tokenizer(texts, padding="max_length", truncation=True, max_length=args.tokens, return_tensors="pt")
    pix = torch.randn(args.images, 3, args.image_size, args.image_size)
    from benchmark import compat

    compat.apply()
    from torchvision.models import resnet18

    def transrec_step(text_vecs, image_vecs, users: SequenceEncoder):
        def step():
            z = torch.cat([text_vecs(), image_vecs()]).unsqueeze(0)
            return users(z, lengths).pow(2).sum()
        return step

    full_text, full_head = model, nn.Linear(model.config.hidden_size, 256)
    res = resnet18(weights=None)
    res.fc = nn.Linear(512, 256)
    users = user_encoder()
    for p in full_text.parameters():
        p.requires_grad_(True)
    rows.append((f"TransRec, full fine-tuning ({ident.split('@')[0]} all {n_layers} layers + ResNet-18)", *measure(
        transrec_step(lambda: full_head(full_text(**tok).last_hidden_state[:, 0]), lambda: res(pix), users),
        [*full_text.parameters(), *full_head.parameters(), *res.parameters(), *users.parameters()], args.reps)))

    for p in model.parameters():
        p.requires_grad_(False)
    cache = TextTokenCache(model, tokenizer, texts, torch.arange(args.texts).numpy(), args.texts, n_layers - 2,
                           args.tokens)
    tower = TextTower(model, n_layers - 2, 256)
    res_top = resnet18(weights=None)
    res_top.fc = nn.Linear(512, 256)
    for name, p in res_top.named_parameters():
        p.requires_grad_(name.startswith(("layer3", "layer4", "fc")))
    users = user_encoder()
    trainable = [p for m in (tower, res_top, users) for p in m.parameters() if p.requires_grad]
    rows.append(("TransRec as here (MiniLM top 2 over cached states + ResNet-18 layer3/4)", *measure(
        transrec_step(lambda: tower(cache.hidden, cache.mask), lambda: res_top(pix), users), trainable, args.reps)))

    cnn, users = SmallCNN(256, 32), user_encoder()
    small = torch.randn(args.images, 3, 64, 64)
    trainable = [p for m in (tower, cnn, users) for p in m.parameters() if p.requires_grad]
    rows.append(("TransRec offline (MiniLM top 2 + small CNN from scratch, 64 px)", *measure(
        transrec_step(lambda: tower(cache.hidden, cache.mask), lambda: cnn(small), users), trainable, args.reps)))

    print(f"Table 4 shape: one user sequence, {args.images} images ({args.image_size}px) + {args.texts} texts "
          f"({args.tokens} tokens), forward+backward+Adam, {args.threads} thread(s)")
    peak = gemm_peak()
    print(f"fp32 GEMM reference measured now (1024^3 matmul, best of 5): {peak:.1f} GFLOP/s. A row far below it is "
          "held by something else (element-wise work, memory, small matrices); one near or above it (oneDNN's "
          "convolutions can beat a plain matmul) by fp32 arithmetic itself")
    print(f"{'model':<80} {'GFLOPs':>10} {'s/batch':>9} {'GFLOP/s':>8} {'of ref':>7}")
    for name, gflops, secs in rows:
        rate = gflops / secs if secs > 0 else 0.0
        print(f"{name:<80} {gflops:>10.3f} {secs:>9.3f} {rate:>8.1f} {100 * rate / peak:>6.0f}%")
    print("paper (Table 4): IDRec 0.033 GFLOPs 0.7 s; TransRec 78.305 GFLOPs 3.2 s (A100s, BERT-base + ResNet-18)")


if __name__ == "__main__":
    main()
