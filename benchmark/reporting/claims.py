"""Check the papers' qualitative claims C1..C12 against stored results: holds / fails / not run.

Each check states its evidence so a reader can see why; a claim whose methods or experiment were
not run says so instead of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.reporting.budget import SETTLED
from benchmark.reporting.results import METRICS, MethodResult

USERS = ("overlapped", "unseen")
ID_ONLY = ("Item2Vec", "PGG")
SEQ_ITEM = ("UniSRec", "MISSRec", "VQRec")


@dataclass
class Claim:
    cid: str
    text: str
    status: str  # "holds" | "fails" | "not run" | "inconclusive (not converged: ...)"
    evidence: str


def unsettled(records: list) -> list[str]:
    """``method (seed s): reason`` for finished runs whose training neither converged nor was needed."""
    out = []
    for r in records:
        if getattr(r, "status", "done") != "done":
            continue
        reason = budget_reason(getattr(r, "training", None))
        if reason not in SETTLED:
            out.append(f"{r.method} (seed {r.seed}): {reason}")
    return out


def budget_reason(training: dict | None) -> str:
    """A run's stop reason from its training budget ("not recorded" when it has none)."""
    return str((training or {}).get("stop_reason") or "not recorded")


def respect_budget(claim: Claim, not_converged: list[str], not_competent: list[str] | None = None) -> Claim:
    """The claim, its holds/fails made inconclusive when a deciding run did not converge, or
    (``not_competent``) is not above its task's floor."""
    ok = {"holds": True, "fails": False}.get(claim.status)
    if ok is None:
        return claim
    if not not_converged and not_competent:
        return Claim(claim.cid, claim.text, f"inconclusive (not competent: {', '.join(not_competent)})", claim.evidence)
    return Claim(claim.cid, claim.text, verdict(ok, not_converged), claim.evidence)


def verdict(ok: bool | None, not_converged: list[str]) -> str:
    """holds / fails / not run; a verdict resting on a run that did not converge is inconclusive."""
    if ok is None:
        return "not run"
    if not_converged:
        shown = ", ".join(not_converged[:4]) + (f" (+{len(not_converged) - 4} more)" if len(not_converged) > 4 else "")
        return f"inconclusive (not converged: {shown})"
    return "holds" if ok else "fails"


def _by_column(results: list[MethodResult]) -> dict[str, MethodResult]:
    return {m.paper_column: m for m in results if m.status == "done" and m.paper_column}


def _beats_all(winner: MethodResult, others: list[MethodResult], strict: bool = True) -> tuple[bool, str]:
    losses = []
    for other in others:
        for users in USERS:
            for metric in METRICS:
                a, b = winner.value(users, metric), other.value(users, metric)
                if not (a > b if strict else a >= b):
                    losses.append(f"{other.display} {users} {metric} {b:.3f} vs {a:.3f}")
    return not losses, ("; ".join(losses[:4]) + (f" (+{len(losses) - 4} more)" if len(losses) > 4 else ""))


#: C12 (UniM2Rec, seed 003): the full model against each ablation of the unim2rec-c12 suite.
C12_FULL = "unim2rec"
C12_ABLATIONS = {"unim2rec-text": "multi-modal > text-only", "unim2rec-linear": "MoE > linear",
                 "unim2rec-single-domain": "mixed flow > single-domain"}
C12_METRICS = {"next-item": ("HR@10", "HR@20", "NDCG@10", "NDCG@20"),  # the paper's Recall/NDCG@10/20
               "item-to-item": ("HR@10", "HR@50", "NDCG@10", "NDCG@50")}


def _protocol_value(result: MethodResult, protocol: str, metric: str, group: str = "all") -> float:
    """Mean over seeds of a metric of one protocol (next-item metrics live in next_item_metrics)."""
    vals = [(r.next_item_metrics if protocol == "next-item" else r.metrics).get(group, {}).get(metric, float("nan"))
            for r in result.records if r.status == "done"]
    return sum(vals) / len(vals) if vals else float("nan")


def check_c12(c12: list[MethodResult] | None, protocol: str) -> tuple[bool | None, str]:
    """Each of the three C12 parts holds when the full model beats the ablation on every metric (all cases)."""
    done = {m.method: m for m in (c12 or []) if m.status == "done"}
    full = done.get(C12_FULL)
    present = [a for a in C12_ABLATIONS if a in done]
    if full is None or not present:
        return None, "run the unim2rec-c12 suite (UniM2Rec and its ablations)"
    metrics = C12_METRICS[protocol]
    if any(_protocol_value(full, protocol, k) != _protocol_value(full, protocol, k) for k in metrics):
        return None, f"UniM2Rec has no {protocol} metrics"
    parts, ok = [], True
    for name in present:
        deltas = {k: _protocol_value(full, protocol, k) - _protocol_value(done[name], protocol, k) for k in metrics}
        holds = all(d > 0 for d in deltas.values())
        ok = ok and holds
        parts.append(f"{C12_ABLATIONS[name]}: {'yes' if holds else 'no'} ("
                     + ", ".join(f"{k} {d:+.2f}" for k, d in deltas.items()) + ")")
    missing = [C12_ABLATIONS[a] for a in C12_ABLATIONS if a not in done]
    if missing:
        parts.append(f"not run: {', '.join(missing)}")
        return (False if not ok else None), "; ".join(parts)
    return ok, "full minus ablation, pp, all test cases: " + "; ".join(parts)


def check_claims(matching: list[MethodResult], ablation_rows: list[list[str]] | None,
                 c12: list[MethodResult] | None = None, transfer: list[Claim] | None = None,
                 c9: Claim | None = None, ablation_runs: list[MethodResult] | None = None,
                 not_competent: dict[str, str] | None = None) -> list[Claim]:
    """C1..C12 from the results; ``ablation_runs``: the full model and its ablations behind ``ablation_rows``
    (C6 is inconclusive when one of them did not converge); ``not_competent``: display -> why, the methods
    not above Popularity in any protocol (``significance.below_popularity``): a claim deciding with one of
    them is inconclusive."""
    cols = _by_column(matching)
    baselines = [m for c, m in cols.items() if not c.startswith("UniEmb")]
    out: list[Claim] = []
    floor = not_competent or {}

    def add(cid: str, text: str, ok: bool | None, evidence: str,
            deciding: list[MethodResult | None] | tuple = ()) -> None:
        records = [r for m in deciding if m is not None for r in m.records]
        below = [f"{m.display} ({floor[m.display]})" for m in deciding if m is not None and m.display in floor]
        out.append(respect_budget(Claim(cid, text, verdict(ok, []), evidence), unsettled(records), below))

    uni, uni_text = cols.get("UniEmb"), cols.get("UniEmb_Text")
    names = ", ".join(m.display for m in baselines) or "none"
    if uni and baselines:
        ok, why = _beats_all(uni, baselines)
        add("C1", "UniEmb beats every baseline on every Table 1 metric (overlapped and unseen)", ok,
            f"baselines run: {names}" + (f"; losses: {why}" if why else ""), [uni, *baselines])
    else:
        add("C1", "UniEmb beats every baseline on every Table 1 metric", None, "UniEmb or baselines not run")
    if uni and uni_text:
        ok, why = _beats_all(uni, [uni_text], strict=False)
        add("C2", "UniEmb (text + image) >= UniEmb_Text", ok, why or "all 12 cells", [uni, uni_text])
    else:
        add("C2", "UniEmb (text + image) >= UniEmb_Text", None, "UniEmb or UniEmb_Text not run")
    if uni_text and baselines:
        ok, why = _beats_all(uni_text, baselines)
        add("C3", "UniEmb_Text alone beats every baseline", ok, f"baselines run: {names}" + (f"; losses: {why}" if why else ""),
            [uni_text, *baselines])
    else:
        add("C3", "UniEmb_Text alone beats every baseline", None, "UniEmb_Text or baselines not run")
    clip = cols.get("CLIP")
    others = [m for c, m in cols.items() if c != "CLIP"]
    if clip and others:
        ok = all(clip.value(u, k) < m.value(u, k) for m in others for u in USERS for k in METRICS)
        worse = sorted({m.display for m in others for u in USERS for k in METRICS if clip.value(u, k) >= m.value(u, k)})
        add("C4", "raw content (CLIP) embeddings are the weakest in item-to-item matching", ok,
            "weaker than CLIP somewhere: " + ", ".join(worse) if worse else f"below all of: {', '.join(m.display for m in others)}",
            [clip, *others])
    else:
        add("C4", "raw content (CLIP) embeddings are the weakest", None, "CLIP or other paper methods not run")
    id_methods = [cols[c] for c in ID_ONLY if c in cols]
    seq_methods = [cols[c] for c in SEQ_ITEM if c in cols]
    if id_methods and seq_methods:
        ok = all(a.value(u, k) > b.value(u, k) for a in id_methods for b in seq_methods for u in USERS for k in METRICS)
        add("C5", "ID co-occurrence methods beat sequence-item pretraining methods", ok,
            f"{[m.display for m in id_methods]} vs {[m.display for m in seq_methods]}", [*id_methods, *seq_methods])
    else:
        missing = [side for side, ran in (("Item2Vec/PGG", id_methods), ("UniSRec/MISSRec/VQRec", seq_methods))
                   if not ran]
        add("C5", "ID co-occurrence methods beat sequence-item pretraining methods", None,
            f"needs Item2Vec/PGG and UniSRec/MISSRec/VQRec (none of {' and none of '.join(missing)} in this run)")
    if ablation_rows:
        vals = [[float(c) if c else float("nan") for c in row[1:]] for row in ablation_rows]
        ran = [any(v[j] == v[j] for v in vals) for j in (0, 1)]  # an ablation not run has empty cells
        hurts = [all(v[j] < 0 for v in vals) for j in (0, 1)]
        user_view_more = all(v[0] < v[1] for v in vals)
        if all(ran):
            ok = hurts[0] and hurts[1] and user_view_more
        else:  # one ablation not run: undetermined, unless the one that ran does not hurt
            ok = None if all(h for h, r in zip(hurts, ran, strict=True) if r) else False
        add("C6", "removing the user view hurts more than removing cross-domain sequences; both hurt", ok,
            "deltas (w/o user view, w/o cross-domain): " + "; ".join(f"{r[0]} {r[1]}/{r[2]}" for r in ablation_rows)
            + ("" if all(ran) else "; run both ablations of the xmarket-ablation suite"), ablation_runs or ())
    else:
        add("C6", "removing the user view hurts more than removing cross-domain; both hurt", None,
            "run the xmarket-ablation suite")
    done = [m for m in matching if m.status == "done" and m.paper_column]
    if uni and len(done) > 1:
        drops = {m.display: (m.value("head", "HR@50") - m.value("tail", "HR@50")) / max(m.value("head", "HR@50"), 1e-9)
                 for m in done}
        every_drops = all(d > 0 for d in drops.values())
        ids = [cols[c].display for c in ID_ONLY if c in cols]
        id_most = bool(ids) and min(drops[i] for i in ids) >= max(v for k, v in drops.items() if k not in ids)
        best_both = all(uni.value(g, "HR@50") >= m.value(g, "HR@50") for m in done for g in ("head", "tail"))
        ok = every_drops and id_most and best_both
        if not ids:  # "ID-only methods drop most" needs Item2Vec or PGG: undetermined unless another part fails
            ok = False if not (every_drops and best_both) else None
        add("C7", "every method drops on tail items; ID-only methods drop most; UniEmb best on head and tail", ok,
            "relative head->tail HR@50 drop: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in drops.items())
            + f"; every method drops: {every_drops}; ID-only drop most: {id_most if ids else 'not run (Item2Vec/PGG)'}"
            + f"; UniEmb best on both: {best_both}", done)
    else:
        add("C7", "every method drops on tail items; ID-only drop most; UniEmb best on both", None, "UniEmb not run")
    add("C8", "per-domain: ID-only methods strong in the largest domain, weak in small ones; UniEmb wins nearly everywhere",
        *_c8(uni, baselines, id_methods), deciding=[uni, *baselines])
    if c9 is not None:
        out.append(c9)
    else:
        add("C9", "pretrained embeddings raise ranking AUC; UniEmb best", None, "run the xmarket-ranking suite (Table 4)")
    checked = {c.cid: c for c in transfer or []}
    for cid, text in (("C10", "TransRec beats training from scratch on target domains"),
                      ("C11", "TransRec end-to-end beats frozen features")):
        out.append(checked.get(cid) or Claim(cid, text, "not run", "run the xmarket-transfer suite"))
    c12_runs = [m for m in (c12 or []) if m.method == C12_FULL or m.method in C12_ABLATIONS]
    add("C12", "UniM2Rec: multi-modal > text-only; MoE > linear; mixed flow > single-domain (next-item, the paper's protocol)",
        *check_c12(c12, "next-item"), deciding=c12_runs)
    add("C12-i2i", "UniM2Rec: multi-modal > text-only; MoE > linear; mixed flow > single-domain (item-to-item)",
        *check_c12(c12, "item-to-item"), deciding=c12_runs)
    return out


def _c8(uni: MethodResult | None, baselines: list[MethodResult], id_methods: list[MethodResult]) -> tuple[bool | None, str]:
    if uni is None or not baselines:
        return None, "UniEmb or baselines not run"
    domains = sorted({g.split("=", 1)[1] for r in uni.records for g in r.metrics if g.startswith("domain=")})
    if len(domains) < 2:
        return None, "fewer than two domains"
    share = uni.records[0].dataset.get("domain_interactions", {})
    largest = max(domains, key=lambda d: share.get(d, 0))

    def gain(m: MethodResult, d: str) -> float:
        base = m.value(f"domain={d}", "HR@50")
        return (uni.value(f"domain={d}", "HR@50") - base) / base if base > 0 else float("inf")

    id_pattern = all(gain(m, largest) <= min(gain(m, d) for d in domains if d != largest) for m in id_methods)
    wins = {m.display: sum(gain(m, d) > 0 for d in domains) for m in baselines}
    nearly_all = all(w >= len(domains) - 1 for w in wins.values())
    id_note = "" if id_methods else " (ID-only part not checked: Item2Vec/PGG not run)"
    # without an ID-only method the first part is undetermined: "not run" unless the second part fails
    ok = (id_pattern and nearly_all) if id_methods else (None if nearly_all else False)
    return ok, (
        f"largest domain {largest}; UniEmb's gain over ID-only methods smallest there: {id_pattern}{id_note}; "
        f"domains UniEmb wins per baseline: {wins}")


def claim_table(claims: list[Claim], on_paper_data: bool) -> list[str]:
    """Markdown lines of the claims table; off the paper's XMarket (and its twin) every verdict is
    marked "informational" (``reporting.paper_data.on_paper_data`` decides, from the run records)."""
    lines = [] if on_paper_data else [
        "Informational: the papers' claims are about the paper's XMarket; this is other data (see the Data line "
        "above), so the verdicts below describe it and do not confirm or refute the papers.", ""]
    return lines + ["| claim | status | evidence |", "|---|---|---|"] + [
        f"| {c.cid} {c.text} | **{c.status if on_paper_data else c.status + ' (informational)'}** | {c.evidence} |"
        for c in claims]
