"""Tables 6-9 of TransRec and claims C10/C11 from the stored transfer results (never re-runs a model).

Cells are means over seeds of next-item metrics on the target's test cases (percent). Claims use
paired Wilcoxon signed-rank tests on per-case NDCG@10 (averaged over seeds) over the same target
cases; with fewer seeds or cases than the suite asks for, the claim says so instead of a verdict.
Each table is followed by its conditions' training budgets (steps, examples, epochs, stop reason),
Tables 7 and 8 by the data each share trained on per epoch (reporting/transfer_budget.py checks
that no step cap fed two shares the same amount); ``training_budget.csv`` has one row per condition.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmark import registry
from benchmark.errors import BenchmarkError
from benchmark.evaluation.metrics import NDCG
from benchmark.evaluation.significance import paired_test
from benchmark.fsutil import load_result_array
from benchmark.grid.failures import read_failures
from benchmark.machine import versions_line
from benchmark.reporting import noise
from benchmark.reporting.budget import SETTLED
from benchmark.reporting.claims import Claim, claim_table, respect_budget
from benchmark.reporting.paper_data import header_lines, on_paper_data
from benchmark.reporting.significance import format_p
from benchmark.reporting.transfer_budget import (
    BUDGET_HEADER,
    BUDGET_NOTE,
    CSV_HEADER,
    budget_csv_rows,
    budget_rows,
    capped_shares,
    condition_stop,
    share_table,
    short_pair,
    transfer_curves,
)
from benchmark.reporting.transfer_competence import FLOOR, below_floor, competence_section
from benchmark.reporting.writers import keyed_dir, staged_report, write_text
from benchmark.store.records import has_record, read_record_dict, record_path
from benchmark.store.tracking import code_changes, code_version
from benchmark.tasks.transfer.stages import NO_TRANSFER_RECIPE, condition_cfg, pretrains_transrec

log = logging.getLogger(__name__)

METRICS = ("HR@5", "NDCG@5", "HR@10", "NDCG@10")
ID_ORDER = ("gru4rec", "nextitnet", "sasrec", "popularity")
ID_LABELS = {"gru4rec": "IDRNN (GRU4Rec)", "nextitnet": "IDCNN (NextItNet)", "sasrec": "IDRec (SASRec)",
             "popularity": "Popularity"}
ALPHA = 0.05
#: TransRec paper values (seed 001 Tables 6-9), TN-mixed rows, for the "paper" column of the report.
PAPER_TN_MIXED = {"IDRNN": (1.09, 0.63, 1.29, 0.62), "IDCNN": (1.12, 0.67, 1.95, 0.94),
                  "IDRec": (1.17, 0.68, 2.10, 1.00), "TFS": (2.49, 1.60, 4.28, 2.13),
                  "TransRec": (2.85, 1.77, 4.78, 2.39)}


def load_transfer(folder: Path, dataset: str | None = None, scale: str | None = None) -> list[dict[str, Any]]:
    """The stored condition records (with their folders) under ``results/<suite>/transfer``.

    Only the records of the newest record's data, split and scale are kept (of ``dataset`` /
    ``scale`` when given), so a tiny run and a small run in one results folder never mix in a
    table; of several records of one condition (a rerun after a config change), the newest.
    """
    folders = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and has_record(p)] \
        if folder.is_dir() else []
    out = []
    for sub in sorted(folders, key=lambda p: record_path(p).stat().st_mtime):
        try:
            rec = read_record_dict(sub)  # older record.json folders read upgraded
        except BenchmarkError as exc:  # truncated or corrupt: named, left out, recomputed by `run`
            log.warning("%s; left out of the report (rerun `run` to recompute it)", exc)
            continue
        rec["folder"] = str(sub)
        if (dataset is None or rec["dataset"].get("name") == dataset) and (scale is None or rec.get("scale") == scale):
            out.append(rec)
    if not out:
        raise BenchmarkError(f"no transfer results under {folder}"
                             + (f" on {dataset or 'any dataset'} at scale {scale or 'any'}" if dataset or scale else "")
                             + "; run the suite first")

    def same(r: dict) -> tuple:
        return (r["dataset"]["label"], r["dataset"]["manifest_hash"], r.get("scale"),
                json.dumps(condition_cfg(r["transfer"]), sort_keys=True))

    def source_rule(r: dict) -> str:  # TransRec's source stopping rule (SOURCE_STAGE_KEYS), "" elsewhere
        return json.dumps(condition_cfg(r["transfer"], r["condition"]), sort_keys=True) if pretrains_transrec(
            r["condition"]) else ""

    newest = same(out[-1])
    pretrained = [r for r in out if same(r) == newest and pretrains_transrec(r["condition"])]
    rule = source_rule(pretrained[-1]) if pretrained else ""
    # one record per condition: a condition rerun under another config (new key) replaces the older record;
    # TransRec's source-pretrained conditions only under the newest source rule (never two rules in one table)
    latest = {json.dumps(r["condition"], sort_keys=True): r for r in out
              if same(r) == newest and source_rule(r) in ("", rule)}
    return sorted(latest.values(), key=lambda r: r["run_key"])


def finetune_methods(records: list[dict]) -> list[str]:
    """The suite's fine-tuning methods, from a record that lists them (records older than the key do not)."""
    return next((list(r["transfer"]["finetune_methods"]) for r in records if "finetune_methods" in r["transfer"]), [])


def _select(records: list[dict], method: str, sf: float | None, tf: float, e2e: bool = True) -> list[dict]:
    return sorted((r for r in records if r["condition"]["method"] == method
                   and r["condition"]["source_fraction"] == sf and r["condition"]["target_fraction"] == tf
                   and r["condition"]["end_to_end"] == e2e), key=lambda r: r["condition"]["seed"])


def _mean(recs: list[dict], metric: str, group: str = "all", protocol: str = "next_item") -> float:
    vals = [r[protocol][group][metric] for r in recs if group in r[protocol]]
    return float(np.mean(vals)) if vals else float("nan")


def _fmt(x: float) -> str:
    return "-" if np.isnan(x) else f"{x:.2f}"


def _gain(a: float, b: float) -> float:
    return 100 * (a - b) / b if b > 0 else float("nan")


def _per_case(recs: list[dict]) -> np.ndarray | None:
    vals = [NDCG(10)(load_result_array(Path(r["folder"]) / "next_item_ranks.npy")) for r in recs]
    return np.mean(vals, axis=0) if vals else None


def _md(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def _csv(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(",".join(x) for x in [header, *rows]) + "\n"


def tables(records: list[dict]) -> dict[str, tuple[list[str], list[list[str]]]]:
    """name -> (header, rows) for Tables 6, 7, 8, 9 (means over seeds, percent)."""
    cfg = records[0]["transfer"]
    out: dict[str, tuple[list[str], list[list[str]]]] = {}
    ids = [(m, _select(records, m, None, 1.0)) for m in ID_ORDER if _select(records, m, None, 1.0)]
    ids += [(m, recs) for m in finetune_methods(records) if (recs := _select(records, m, 1.0, 1.0))]
    tfs, tr = _select(records, "tfs", None, 1.0), _select(records, "transrec", 1.0, 1.0)
    header = ["protocol", "metric", *(ID_LABELS.get(m, f"{recs[0]['display']} src->tgt") for m, recs in ids), "TFS",
              "TransRec", "Improv. %"]
    rows = []
    for protocol in ("next_item", "item_to_item"):
        for metric in METRICS:
            a, b = _mean(tr, metric, protocol=protocol), _mean(tfs, metric, protocol=protocol)
            rows.append([protocol.replace("_", "-"), metric, *(_fmt(_mean(recs, metric, protocol=protocol))
                                                               for _, recs in ids), _fmt(b), _fmt(a), _fmt(_gain(a, b))])
    out["table6"] = (header, rows)
    fracs = cfg["source_fractions"]
    header = ["metric", "TFS", *(f"src {100 * f:g}%" for f in fracs)]
    rows = [[m, _fmt(_mean(tfs, m)), *(_fmt(_mean(_select(records, "transrec", f, 1.0), m)) for f in fracs)]
            for m in ("HR@10", "NDCG@10")]
    out["table7"] = (header, rows)
    header = ["target share", "train sequences", "TFS HR@10", "TransRec HR@10", "Improv. %",
              "TFS NDCG@10", "TransRec NDCG@10", "Improv. %"]
    rows = []
    for f in cfg["target_fractions"]:
        t, r = _select(records, "tfs", None, f), _select(records, "transrec", 1.0, f)
        n = str(t[0]["target_train_sequences"]) if t else "-"
        rows.append([f"{100 * f:g}%", n, _fmt(_mean(t, "HR@10")), _fmt(_mean(r, "HR@10")),
                     _fmt(_gain(_mean(r, "HR@10"), _mean(t, "HR@10"))), _fmt(_mean(t, "NDCG@10")),
                     _fmt(_mean(r, "NDCG@10")), _fmt(_gain(_mean(r, "NDCG@10"), _mean(t, "NDCG@10")))])
    out["table8"] = (header, rows)
    groups = ("all", "text-target", "image-target")
    header = ["method", "manner", *(f"{g} {m}" for g in groups for m in ("HR@10", "NDCG@10"))]
    rows = []
    for name, method, sf in (("TFS", "tfs", None), ("TransRec", "transrec", 1.0)):
        for manner, e2e in (("Frozen", False), ("End2end", True)):
            recs = _select(records, method, sf, 1.0, e2e)
            rows.append([name, manner, *(_fmt(_mean(recs, m, g)) for g in groups for m in ("HR@10", "NDCG@10"))])
    out["table9"] = (header, rows)
    return out


def _paired(a: list[dict], b: list[dict], min_cases: int) -> tuple[float, float, int] | str:
    """(mean diff of per-case NDCG@10 in points, Wilcoxon p, cases) or the reason there is no test."""
    pa, pb = _per_case(a), _per_case(b)
    if pa is None or pb is None:
        return "condition not run"
    if len(pa) < min_cases:
        return f"only {len(pa)} target test cases, fewer than the {min_cases} a paired test needs"
    t = paired_test(pa, pb)
    return 100 * t.mean_diff, t.p_value, len(pa)


def transfer_claims(records: list[dict]) -> list[Claim]:
    """C10 and C11 with their evidence (paired tests, seeds, target-share trend)."""
    cfg = records[0]["transfer"]
    min_cases, min_seeds = int(cfg["min_paired_cases"]), int(cfg["min_seeds"])
    tr, tfs = _select(records, "transrec", 1.0, 1.0), _select(records, "tfs", None, 1.0)
    seeds = min(len(tr), len(tfs))
    claims = []
    c10 = "TransRec (pretrained on the source) beats TFS on the target; the gain grows as target data shrinks"
    test = _paired(tr, tfs, min_cases)
    if seeds < min_seeds:
        claims.append(Claim("C10", c10, "not run", f"{seeds} seed(s) of TransRec and TFS; the check needs {min_seeds}"))
    elif isinstance(test, str):
        claims.append(Claim("C10", c10, "not run", test))
    else:
        diff, p, n = test
        gains = {f: _gain(_mean(_select(records, "transrec", 1.0, f), "NDCG@10"),
                          _mean(_select(records, "tfs", None, f), "NDCG@10")) for f in cfg["target_fractions"]}
        vals = [gains[f] for f in sorted(gains)]
        trend = all(x >= y for x, y in zip(vals[:-1], vals[1:], strict=True)) and not any(np.isnan(vals))
        beats = diff > 0 and p < ALPHA
        capped = capped_shares(records, "target", cfg["target_fractions"])
        evidence = (f"NDCG@10 TransRec - TFS {diff:+.3f} pp over {n} target cases, Wilcoxon p={format_p(p)} "
                    f"({seeds} seeds); relative NDCG@10 gain by target share: "
                    + ", ".join(f"{100 * f:g}% {g:+.1f}%" for f, g in sorted(gains.items()))
                    + f"; grows as data shrinks: {trend}")
        if capped and beats:  # the second half cannot be judged: undetermined, not "holds"
            claims.append(Claim("C10", c10, "not run", evidence + f"; BUT the trend is untestable here: {capped}"))
        else:
            claims.append(Claim("C10", c10, "holds" if beats and trend else "fails",
                                evidence + (f" (trend untestable here: {capped})" if capped else "")))
    c11 = "end-to-end training beats frozen features (TransRec and TFS)"
    parts, verdicts = [], []
    for name, method, sf in (("TransRec", "transrec", 1.0), ("TFS", "tfs", None)):
        e2e, frozen = _select(records, method, sf, 1.0, True), _select(records, method, sf, 1.0, False)
        if min(len(e2e), len(frozen)) < min_seeds:
            parts.append(f"{name}: {min(len(e2e), len(frozen))} seed(s), needs {min_seeds}")
            verdicts.append(None)
            continue
        test = _paired(e2e, frozen, min_cases)
        if isinstance(test, str):
            parts.append(f"{name}: {test}")
            verdicts.append(None)
            continue
        diff, p, n = test
        by_mod = ", ".join(f"{g} {_mean(e2e, 'NDCG@10', g) - _mean(frozen, 'NDCG@10', g):+.2f}"
                           for g in ("text-target", "image-target"))
        parts.append(f"{name}: NDCG@10 e2e - frozen {diff:+.3f} pp, p={format_p(p)}, n={n} (by target modality: {by_mod})")
        verdicts.append(diff > 0 and p < ALPHA)
    # one method failing refutes the claim; otherwise a method without a verdict leaves it undetermined
    status = "fails" if False in verdicts else ("not run" if None in verdicts else "holds")
    claims.append(Claim("C11", c11, status, "; ".join(parts)))
    below = below_floor(competence_columns(records), _select(records, FLOOR, None, 1.0))
    # who each claim decides with: C10 TransRec and TFS, C11 also their frozen variants
    deciders = {"C10": ("TFS", "TransRec"), "C11": ("TFS", "TransRec", "TFS Frozen", "TransRec Frozen")}
    deciding = [r for r in records if r["condition"]["method"] in ("transrec", "tfs")]
    unsettled = [f"{_label(r)}: {condition_stop(r)}" for r in deciding if condition_stop(r) not in SETTLED]
    if short_source(records, cfg):  # C10 and C11 both decide with TransRec pretrained on 100 % of the source
        unsettled.append("TransRec's source pretraining at 100 %: stopped below a smaller share's validation "
                         "score (under-trained, see Table 7's data per source share)")
    return [respect_budget(c, unsettled, [f"{label} ({why})" for label, why in below.items()
                                          if label in deciders[c.cid]]) for c in claims]


def competence_columns(records: list[dict]) -> list[tuple[str, list[dict]]]:
    """The conditions the competence check tests: Table 6's and Table 9's frozen ones (C10, C11 read them)."""
    groups = table_conditions(records)
    return [(label, recs) for label, recs in [*groups["table6"], *groups["table9"]] if recs
            and label not in ("TFS End2end", "TransRec End2end")]


def short_source(records: list[dict], cfg: dict) -> bool:
    """True when the 100 % source share's pretraining is the one :func:`stopped_short` flags."""
    pair = short_pair(records, "source", cfg["source_fractions"])
    return pair is not None and pair[0]["share"] == 1.0


def write_transfer_reports(suite: str, folder: Path, reports_dir: Path, dataset: str | None = None,
                           scale: str | None = None) -> str:
    """Write tables 6-9 (CSV + Markdown), claims.md and transfer_claims.json; return the report text.

    Off XMarket (another dataset than ``xmarket`` or its twin) the claims are "informational".
    """
    records = load_transfer(folder, dataset, scale)
    label = records[0]["dataset"]["label"]
    synthetic = " - SYNTHETIC DATA, not XMarket" if records[0]["dataset"]["synthetic"] else ""
    cfg = records[0]["transfer"]
    final = keyed_dir(reports_dir, suite, records[0]["dataset"].get("name") or records[0]["dataset"]["label"].split()[0], records[0]["scale"])
    with staged_report(final) as out:
        seeds = sorted({r["condition"]["seed"] for r in records})
        paper = on_paper_data(r["dataset"] for r in records)
        parts = [f"# {suite} on {label}{synthetic}", "", *header_lines(r["dataset"] for r in records),
                 f"Source {' + '.join(cfg['source_domains'])} -> target {cfg['target_domain']}; "
                 f"{records[0]['target_cases']} target test cases; seeds {seeds}; cells = mean over seeds, percent, "
                 "next-item protocol over the target's items (full ranking). TransRec's item towers: "
                 f"{_towers(records)}.", ""]
        titles = {"table6": "Table 6: TransRec vs TFS vs ID baselines on the target",
                  "table7": "Table 7: TransRec by source data share (target 100%)",
                  "table8": "Table 8: TransRec vs TFS by target data share",
                  "table9": "Table 9: end-to-end vs frozen features (groups = modality of the target item)"}
        groups = table_conditions(records)
        shares = {"table7": share_table(records, "source", cfg["source_fractions"]),
                  "table8": share_table(records, "target", cfg["target_fractions"])}
        for name, (header, rows) in tables(records).items():
            write_text(out / f"{name}.csv", _csv(header, rows))
            parts += [f"### {titles[name]}", "", *_md(header, rows), "", *shares.get(name, []),
                      *_md(BUDGET_HEADER, budget_rows(groups[name])), ""]
        curves = transfer_curves(records, _label, f"{suite} on {label}: validation NDCG@10 vs optimizer steps",
                                 out / "learning_curves")
        parts += [BUDGET_NOTE + (" Validation curves: learning_curves.png (source pretraining by share; target "
                                 "training of every condition at 100 % of the target)." if curves else ""), ""]
        write_text(out / "training_budget.csv", _csv(CSV_HEADER, budget_csv_rows(records, _cond)))
        absent = [m for m in finetune_methods(records) if not _select(records, m, 1.0, 1.0)]
        if absent:
            parts += [f"Not in Table 6 (fine-tuning methods listed in the suite): {_absent_reasons(absent)}.", ""]
        if paper:
            parts += ["Paper (TN-mixed, Table 6, percent): " + "; ".join(
                f"{k} " + "/".join(f"{v:.2f}" for v in vals) for k, vals in PAPER_TN_MIXED.items())
                + " (HR@5/NDCG@5/HR@10/NDCG@10)", ""]
        parts += ["### Competence against Popularity", "",
                  *competence_section(competence_columns(records), _select(records, FLOOR, None, 1.0))]
        rows = noise.noise_rows(_noise_columns(records), "HR@10", "next-item")
        write_text(out / "noise.csv", _csv(noise.HEADER, rows))
        parts += [*noise.noise_markdown(rows, "HR@10", "next-item, Table 6 conditions"), ""]
        claims = transfer_claims(records)
        lines = claim_table(claims, paper)
        write_text(out / "claims.md", f"# Claims check: {suite} on {label}{synthetic}\n\n"
                   + "\n".join([*header_lines(r["dataset"] for r in records), *lines]) + "\n")
        write_text(out / "transfer_claims.json", json.dumps([c.__dict__ for c in claims], indent=1))
        versions = sorted({str(r.get("code_version", "unknown")) for r in records})
        parts += ["### Claims (C10, C11)", "", *lines, "", "### Provenance", "",
                  f"Built from {len(records)} stored condition(s) made by code version(s) {', '.join(versions)}; "
                  f"report written by code version {code_version()}. " + code_changes(versions),
                  versions_line([r.get("machine", {}) for r in records]), "",
                  *_md(["condition", "seed", "key", "steps", "epochs", "stop", "seconds"],
                       [[_cond(r), str(r["condition"]["seed"]), r["run_key"], *_budget(r), str(r["seconds"])] for r in records]),
                  "", "steps / epochs / stop: the condition's training budget (for a staged recipe, all stages; stop = "
                  "why the last stage ended, or an earlier validated stage that hit its cap: converged = early stopping "
                  "on validation, max_epochs = the cap)."]
        failed = [f for f in read_failures(folder) if not has_record(folder / f.key)]
        if failed:
            parts += ["", "### Failed conditions (rerun to retry them)", "", *(f"- {f.line()}" for f in failed)]
        text = "\n".join(parts) + "\n"
        write_text(out / "report.md", text)
        return text


def _noise_columns(records: list[dict]) -> list[tuple[str, dict[str, dict]]]:
    """Table 6's conditions (full data, end to end) as noise columns: {group: {n, HR@10 mean over seeds}}."""
    conds = [(ID_LABELS.get(m, m), _select(records, m, None, 1.0)) for m in ID_ORDER]
    conds += [(f"{m} src->tgt", _select(records, m, 1.0, 1.0)) for m in finetune_methods(records)]
    conds += [("TFS", _select(records, "tfs", None, 1.0)), ("TransRec", _select(records, "transrec", 1.0, 1.0))]
    out = []
    for name, recs in conds:
        if recs:
            groups = recs[0]["next_item"]
            out.append((name, {g: {"n": row.get("n", 0), "HR@10": _mean(recs, "HR@10", g)}
                               for g, row in groups.items() if "HR@10" in row}))
    return out


def _absent_reasons(methods: list[str]) -> str:
    """Why each listed fine-tuning method has no record (the run printed the same reason)."""
    out = []
    for m in methods:
        try:
            cls = registry.get_method(m)
        except Exception:  # noqa: BLE001 - not installed here
            out.append(f"{m} (not a registered method here)")
            continue
        out.append(f"{m} (not run: {NO_TRANSFER_RECIPE})" if not cls.supports_transfer()
                   else f"{m} (not run in this grid: not in --methods, or skipped for missing inputs)")
    return "; ".join(out)


def _label(r: dict) -> str:
    c = r["condition"]
    return (f"{c['method']} tgt {c['target_fraction']:g}{'' if c.get('end_to_end', True) else ' frozen'} "
            f"(seed {c['seed']})")


def _budget(r: dict) -> list[str]:
    """(optimizer steps, epochs, stop reason) of a condition, from its method's recorded training budget."""
    t = (r.get("stats") or {}).get("training") or {}
    return [str(t.get("optimizer_steps", "-")), str(t.get("epochs", "-")), condition_stop(r)]


def table_conditions(records: list[dict]) -> dict[str, list[tuple[str, list[dict]]]]:
    """name -> the (label, records over seeds) of each condition a table reads, for its budget rows."""
    ids = [(ID_LABELS[m], _select(records, m, None, 1.0)) for m in ID_ORDER if m != FLOOR]
    ids += [(f"{recs[0]['display']} src->tgt", recs) for m in finetune_methods(records)
            if (recs := _select(records, m, 1.0, 1.0))]
    tfs, tr = ("TFS", _select(records, "tfs", None, 1.0)), ("TransRec", _select(records, "transrec", 1.0, 1.0))
    cfg = records[0]["transfer"]
    return {"table6": [*ids, tfs, tr],
            "table7": [tfs, *((f"TransRec src {100 * f:g}%", _select(records, "transrec", f, 1.0))
                              for f in cfg["source_fractions"])],
            "table8": [(f"{name} tgt {100 * f:g}%", _select(records, m, sf, f)) for f in cfg["target_fractions"]
                       for name, m, sf in (("TFS", "tfs", None), ("TransRec", "transrec", 1.0))],
            "table9": [(f"{name} {manner}", _select(records, m, sf, 1.0, e2e)) for name, m, sf in
                       (("TFS", "tfs", None), ("TransRec", "transrec", 1.0))
                       for manner, e2e in (("Frozen", False), ("End2end", True))]}


def _cond(r: dict) -> str:
    c = r["condition"]
    src = "" if c["source_fraction"] is None else f" src {c['source_fraction']:g}"
    return f"{r['display']}{src} tgt {c['target_fraction']:g}{'' if c['end_to_end'] else ' frozen'}"


def _towers(records: list[dict]) -> str:
    seen: dict[str, set] = defaultdict(set)
    for r in records:
        st = r.get("stats") or {}
        if "text_tower" in st:
            seen["text"].add(st["text_tower"])
            seen["image"].add(st["image_tower"])
    return "; ".join(f"{k}: {', '.join(sorted(v))}" for k, v in seen.items()) or "n/a"
