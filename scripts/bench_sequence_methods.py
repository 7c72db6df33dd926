"""Training samples/s of our sequence methods next to RecBole 1.2.1's SASRec, on the same sequences.

Usage:
    PYTHONPATH=. python scripts/bench_sequence_methods.py --scale small --users 4000 --data-dir data

A "sample" is one (history -> next item) prefix example, RecBole's training unit. Everything is
timed in this process on the twin's training sequences (xmarket-sim, SYNTHETIC; ``--users``
keeps the first N users to bound the time) with ``--threads`` torch threads:

- RecBole SASRec: an atomic ``.inter`` file of those sequences in a temp dir, RecBole's own
  Config / Dataset / data_preparation (leave-one-out split, so its training part is each user's
  sequence minus the last two items), ``loss_type: CE``, one ``Trainer._train_epoch``.
- our ``sasrec`` (same sizes: RecBole's defaults) for one epoch, no validation;
- ``unisrec`` (paper sizes unless ``--unisrec-dim``): one pretraining and one fine-tuning epoch,
  with ``examples: prefixes`` (the code's data) and ``examples: windows`` (the small preset's);
- ``vqrec`` if that method is registered: its whole fit with the matching suite's small preset
  (the paper's d 300 over every prefix takes > 8 min per epoch here), one epoch per stage.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.data.model import Sequences, TrainView
from benchmark.features.model import ItemFeatures
from benchmark.plugin import RunContext


def twin(scale: str, data_dir: Path, users: int | None) -> tuple[TrainView, ItemFeatures]:
    """The twin's training view (first ``users`` sequences) and cached features, as the runner builds them."""
    from benchmark.data.sources import load_dataset
    from benchmark.data.split import cached_split, train_view
    from benchmark.features import compute_features

    dataset = load_dataset("xmarket-sim", data_dir, scale=scale, seed=0, progress=False)
    split = cached_split(dataset, data_dir / ".cache" / "splits", seed=0)
    view = train_view(dataset, split)
    features = compute_features(dataset.items, text_encoder="minilm", image_encoder=None,
                                cache_dir=data_dir / ".cache" / "features", progress=False, word_drop=0.15)
    if users is not None and users < len(view.sequences):
        s = view.sequences
        end = int(s.offsets[users])
        seqs = Sequences(users=s.users[:users], offsets=s.offsets[: users + 1], items=s.items[:end],
                         day=s.day[:end], rating=s.rating[:end])
        view = TrainView(sequences=seqs, items=view.items,
                         item_train_count=np.bincount(seqs.items, minlength=view.n_items).astype(np.int64))
    return view, features


def recbole_sasrec(view: TrainView, cfg: dict[str, Any], threads: int) -> tuple[int, float]:
    """(training samples, seconds) of one RecBole SASRec epoch on the view's sequences."""
    from benchmark import compat

    compat.apply()
    SASRec = compat.recbole_sequential_models().SASRec  # noqa: N806 - RecBole's class; anomaly mode stays off
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):  # RecBole writes log_tensorboard/ in cwd
        name = "twin"
        (Path(tmp) / name).mkdir()
        s = view.sequences
        user = np.repeat(np.arange(len(s)), s.lengths)
        lines = ["user_id:token\titem_id:token\ttimestamp:float"]
        lines += [f"u{u}\ti{i}\t{t}" for t, (u, i) in enumerate(zip(user, s.items, strict=True))]
        (Path(tmp) / name / f"{name}.inter").write_text("\n".join(lines) + "\n")
        config = Config(model="SASRec", dataset=name, config_dict={
            "data_path": tmp, "checkpoint_dir": tmp, "show_progress": False, "use_gpu": False, "device": "cpu",
            "seed": 0, "reproducibility": True, "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
            "MAX_ITEM_LIST_LENGTH": int(cfg["max_len"]), "train_neg_sample_args": None, "loss_type": "CE",
            "hidden_size": int(cfg["dim"]), "inner_size": int(cfg["inner"]), "n_layers": int(cfg["n_layers"]),
            "n_heads": int(cfg["n_heads"]), "hidden_dropout_prob": float(cfg["dropout"]),
            "attn_dropout_prob": float(cfg["dropout"]), "train_batch_size": 2048, "epochs": 1,
            "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
        })
        torch.set_num_threads(threads)
        dataset = create_dataset(config)
        train_data, _, _ = data_preparation(config, dataset)
        model = SASRec(config, train_data.dataset)
        trainer = Trainer(config, model)
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        trainer._train_epoch(train_data, 0, show_progress=False)
        return len(train_data.dataset), time.perf_counter() - t0


def ours_sasrec(view: TrainView, features: ItemFeatures, threads: int) -> tuple[int, float]:
    from methods.sasrec import SASRec

    cfg = {**SASRec.default_config(), "epochs": 1, "valid_fraction": 0.0}
    m = SASRec()
    with RunContext(seed=0, workers=threads).threads():
        m.fit(view, features, cfg, RunContext(seed=0, workers=threads))
    return int(m.stats["positions"]), float(m.stats["seconds_train"])


def ours_unisrec(view: TrainView, features: ItemFeatures, threads: int, examples: str,
                 dim: int | None) -> dict[str, float]:
    from methods.unisrec import UniSRec

    cfg = {**UniSRec.default_config(), "pretrain_epochs": 1, "finetune_epochs": 1, "valid_fraction": 0.0,
           "examples": examples}
    if dim:
        cfg["dim"] = dim
    m = UniSRec()
    with RunContext(workers=threads).threads():
        m.fit(view, features, cfg, RunContext(seed=0, workers=threads))
    return {k: float(m.stats[k]) for k in ("pretrain_examples", "pretrain_seconds", "pretrain_examples_per_s",
                                           "finetune_examples", "finetune_seconds", "finetune_examples_per_s")}


def small_preset(method: str) -> dict[str, Any]:
    """The method's own small-preset values (its config.yaml ``scales.small``; the paper's sizes take hours here)."""
    from benchmark import registry

    return dict(registry.get_method(method).scale_presets().get("small", {}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=("tiny", "small"), default="small")
    parser.add_argument("--users", type=int, default=4000, help="first N training users (0 = all)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the runner's default is 1)")
    parser.add_argument("--unisrec-dim", type=int, default=0, help="UniSRec hidden size (0 = the paper's 300)")
    parser.add_argument("--skip", default="", help="comma list of rows to skip: recbole,sasrec,unisrec,vqrec")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("UIE_DATA_DIR", "data")))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    skip = set(filter(None, args.skip.split(",")))
    view, features = twin(args.scale, args.data_dir, args.users or None)
    print(f"data: xmarket-sim '{args.scale}' (SYNTHETIC), {len(view.sequences)} users, {view.n_items} items, "
          f"{len(view.sequences.items)} interactions; torch threads {args.threads}; load {os.getloadavg()[0]:.1f}")
    rows: list[tuple[str, int, float]] = []
    from methods.sasrec import SASRec

    if "recbole" not in skip:
        rows.append(("RecBole 1.2.1 SASRec (CE, prefixes)", *recbole_sasrec(view, SASRec.default_config(), args.threads)))
    if "sasrec" not in skip:
        rows.append(("ours sasrec (CE, causal windows)", *ours_sasrec(view, features, args.threads)))
    if "unisrec" not in skip:
        for examples in ("prefixes", "windows"):
            r = ours_unisrec(view, features, args.threads, examples, args.unisrec_dim or None)
            rows.append((f"ours unisrec pretrain ({examples})", int(r["pretrain_examples"]), r["pretrain_seconds"]))
            rows.append((f"ours unisrec fine-tune ({examples})", int(r["finetune_examples"]), r["finetune_seconds"]))
    if "vqrec" not in skip:
        from benchmark import registry

        try:
            cls = registry.get_method("vqrec")
        except Exception:  # noqa: BLE001 - not registered on this branch
            cls = None
        if cls is not None:
            m = cls()
            cfg = {**cls.default_config(), **small_preset("vqrec"), "valid_fraction": 0.0}
            for key in ("epochs", "pretrain_epochs", "finetune_epochs"):
                if key in cfg:
                    cfg[key] = 1
            t0 = time.perf_counter()
            with RunContext(workers=args.threads).threads():
                m.fit(view, features, cfg, RunContext(seed=0, workers=args.threads))
            stats = getattr(m, "stats", {})
            n = int(stats.get("examples", stats.get("pretrain_examples", 0)))
            rows.append(("vqrec (small preset, whole fit, 1 ep/stage)", n, time.perf_counter() - t0))
    print(f"\n{'trainer':<40} {'samples':>9} {'seconds':>9} {'samples/s':>11}")
    base = next((n / s for name, n, s in rows if name.startswith("RecBole")), None)
    for name, n, s in rows:
        rate = n / max(s, 1e-9)
        ratio = f"  ({rate / base:.1f}x RecBole)" if base else ""
        print(f"{name:<40} {n:9d} {s:9.1f} {rate:11,.0f}{ratio}")


if __name__ == "__main__":
    main()
