"""A study's results: per-arm statistics over seeds, the claims' verdicts, the table
(``table.md``, ``summary.json``) and the figures (``bars.png``; ``distractors.png``).

Verdicts are mechanical, from the per-seed values of the metric the claim
names (issue #29): Welch's unequal-variance t-test of the two arms' seed
values, two-sided, at p < 0.05 (:data:`ALPHA`), with at least three seeds per
arm (:data:`MIN_SEEDS`): *reproduced* when significant and the claimed-better
arm is higher, *not reproduced* when significant and lower, *not measurable*
otherwise (the p-value is given). Its false-positive rate on an A/A
comparison is at most the test's 5% when the seed-to-seed variation is normal
(3.5% on 4,000 simulated A/A pairs of three seeds: Welch's t is slightly
conservative there; ``tests/test_reproduction.py``). The rule before it ("the difference of the means
exceeds the larger sample standard deviation", two seeds) amounted to a Welch
t of about 1.4 on 1-2 degrees of freedom, p about 0.3. A claim that needs a
trained classifier is not measurable when the classifier's final training
cross-entropy is above 0.8 x ln(C) (:func:`untrained_classifier`). A claim of
``kind`` "kreid" is kreid's own question, reported but not counted among the
papers' claims.
"""

from __future__ import annotations

import json
import os

import numpy as np

from kreid.reproduction.studies import Study


def run_dir(out_dir: str, study: str, arm: str, seed: int) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in arm)
    return os.path.join(out_dir, study, safe, f"seed{seed}")


def _rows(result: dict) -> dict[str, dict]:
    """Every (row name -> metrics) one run contributes to its study's table."""
    arm = result["arm"]
    rows = {arm: result["main"]}
    for mode, metrics in result.get("tta", {}).items():
        rows[f"{arm} {mode}"] = metrics
    if "xqda" in result:
        rows[f"{arm} xqda"] = result["xqda"]
    return rows


ALPHA = 0.05            # two-sided significance of Welch's t-test
MIN_SEEDS = 3           # per arm: with two, Welch's t has 1-2 degrees of freedom
UNTRAINED = 0.8         # a classifier whose final cross-entropy is above this x ln(C)


def welch(a: list[float], b: list[float]) -> tuple[float, float]:
    """(t, two-sided p) of Welch's unequal-variance t-test of mean(a) != mean(b)."""
    from scipy import stats

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if np.var(a, ddof=1) + np.var(b, ddof=1) == 0.0:       # identical constants: no test
        return (0.0, 1.0) if a.mean() == b.mean() else (np.sign(a.mean() - b.mean()) * np.inf,
                                                        0.0)
    t, p = stats.ttest_ind(a, b, equal_var=False)
    return float(t), float(p)


def verdict(better: list[float], worse: list[float]) -> tuple[str, float, float]:
    """(verdict, mean difference, two-sided p) for the claim ``better > worse``: Welch's
    t-test on the per-seed values at p < :data:`ALPHA`, with at least :data:`MIN_SEEDS`
    seeds per arm; "not measurable" whenever it cannot decide."""
    if len(better) < MIN_SEEDS or len(worse) < MIN_SEEDS:
        diff = float(np.mean(better) - np.mean(worse)) if better and worse else float("nan")
        return (f"not measurable (fewer than {MIN_SEEDS} seeds per arm)", diff,
                float("nan"))
    diff = float(np.mean(better) - np.mean(worse))
    _, p = welch(better, worse)
    if not p < ALPHA:
        return f"not measurable (p = {p:.2f})", diff, p
    return ("reproduced" if diff > 0 else "not reproduced"), diff, p


def untrained_classifier(result: dict) -> str:
    """Why ``result``'s classifier cannot carry a claim (its final cross-entropy above
    :data:`UNTRAINED` x ln(C), C the training identities), or ""."""
    losses = result.get("train_losses") or {}
    classes = int(result.get("num_classes") or 0)
    for name in ("loss/am_softmax", "loss/bnneck_ce"):
        if name in losses and classes > 1 and losses[name] > UNTRAINED * np.log(classes):
            return (f"{name[5:]} {losses[name]:.2f} of ln {classes} = {np.log(classes):.2f}")
    return ""


def _arm_of(study: Study, row: str) -> str:
    """The trained arm a table row comes from: the row itself ("RPTM mean"), or the
    longest arm name it extends ("IDE xqda" -> "IDE", "128x64 five_flip" -> "128x64")."""
    names = sorted((a.name for a in study.arms if a.trained), key=len, reverse=True)
    return next((n for n in names if row == n or row.startswith(n + " ")), row)


def summarise(study: Study, out_dir: str, seeds) -> dict:
    values: dict[str, dict[str, list[float]]] = {}
    distractors: dict[int, list[dict]] = {}
    untrained: dict[str, str] = {}           # arm -> why its classifier is not trained
    for arm in (a for a in study.arms if a.trained):
        for seed in seeds:
            path = os.path.join(run_dir(out_dir, study.name, arm.name, seed), "result.json")
            if not os.path.exists(path):
                continue
            with open(path) as f:
                result = json.load(f)
            if untrained_classifier(result):
                untrained[arm.name] = untrained_classifier(result)
            for row, metrics in _rows(result).items():
                for key, v in metrics.items():
                    if key in ("mAP", "rank1", "sgs_rank1"):
                        values.setdefault(row, {}).setdefault(key, []).append(float(v))
            if "distractors" in result:
                distractors[seed] = result["distractors"]
    rows = {row: {k: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1))
                      if len(v) > 1 else float("nan"), "values": v}
                  for k, v in metrics.items()} for row, metrics in values.items()}
    claims = []
    for claim in study.claims:
        a = values.get(claim.better, {}).get(claim.metric, [])
        b = values.get(claim.worse, {}).get(claim.metric, [])
        text, diff, p = verdict(a, b) if a and b else ("not run", float("nan"),
                                                       float("nan"))
        why = [untrained[arm] for arm in (_arm_of(study, claim.better),
                                          _arm_of(study, claim.worse))
               if claim.needs_classifier and arm in untrained]
        if why and a and b:
            text = f"not measurable (classifier not trained: {why[0]})"
        if claim.beyond_budget and a and b:
            text = f"not measurable at this budget ({claim.beyond_budget})"
        claims.append(dict(better=claim.better, worse=claim.worse, paper=claim.text,
                           metric=claim.metric, difference=diff, p=p, verdict=text,
                           kind=claim.kind))
    curve = {}
    if distractors:
        per_seed = list(distractors.values())
        curve = {"gallery": [r["gallery"] for r in per_seed[0]]}
        for key in ("mAP", "rank1"):
            arr = np.array([[r[key] for r in rows_] for rows_ in per_seed])
            curve[key] = arr.mean(0).tolist()
            curve[f"{key}_std"] = (arr.std(0, ddof=1) if len(arr) > 1
                                   else np.zeros(arr.shape[1])).tolist()
    return {"study": study.name, "source": study.source, "setup": study.setup,
            "seeds": list(seeds), "rows": rows, "claims": claims, "distractors": curve,
            "paper": {a.name: a.paper for a in study.arms if a.paper}}


def _pct(stat: dict | None) -> str:
    if not stat:
        return "-"
    if np.isnan(stat["std"]):
        return f"{100 * stat['mean']:.1f}"
    return f"{100 * stat['mean']:.1f} ± {100 * stat['std']:.1f}"


def _p(p: float) -> str:
    return "-" if p is None or np.isnan(p) else f"{p:.3f}"


def markdown(summary: dict) -> str:
    keys = [k for k in ("mAP", "rank1", "sgs_rank1")
            if any(k in m for m in summary["rows"].values())]
    names = {"mAP": "mAP %", "rank1": "rank-1 %", "sgs_rank1": "SGS rank-1 %"}
    lines = [f"### {summary['study']}: {summary['source']}", "",
             f"Setup: {summary['setup']}. Seeds {summary['seeds']}; mean ± sample std.", "",
             "| row | " + " | ".join(names[k] for k in keys) + " | paper (as the "
             "title says) |", "|---" * (len(keys) + 2) + "|"]
    for row, metrics in summary["rows"].items():
        lines.append(f"| {row} | " + " | ".join(_pct(metrics.get(k)) for k in keys)
                     + f" | {summary['paper'].get(row, '')} |")
    if summary["claims"]:
        lines += ["", "| claim (paper) | better | worse | metric | difference (pts) | "
                  "p (Welch) | verdict |", "|---|---|---|---|---|---|---|"]
        for c in summary["claims"]:
            own = " (kreid's own question)" if c.get("kind") == "kreid" else ""
            lines.append(f"| {c['paper']}{own} | {c['better']} | {c['worse']} | {c['metric']} | "
                         f"{100 * c['difference']:+.1f} | {_p(c['p'])} | "
                         f"{c['verdict']} |")
    if summary["distractors"]:
        d = summary["distractors"]
        lines += ["", "| gallery size | mAP % | rank-1 % |", "|---|---|---|"]
        for i, size in enumerate(d["gallery"]):
            lines.append(f"| {size} | {100 * d['mAP'][i]:.1f} ± {100 * d['mAP_std'][i]:.1f} "
                         f"| {100 * d['rank1'][i]:.1f} ± {100 * d['rank1_std'][i]:.1f} |")
    return "\n".join(lines) + "\n"


def write_outputs(study: Study, summary: dict, folder: str) -> dict:
    from kreid.evaluation import reports
    from kreid_edge.files import write_text

    os.makedirs(folder, exist_ok=True)
    files = {"json": reports.write_json(summary, os.path.join(folder, "summary.json")),
             "table": write_text(os.path.join(folder, "table.md"), markdown(summary))}
    if summary["rows"]:
        key = "sgs_rank1" if any("sgs_rank1" in m for m in summary["rows"].values()) else "mAP"
        files["bars"] = reports.plot_bars(
            {row: m[key] for row, m in summary["rows"].items() if key in m},
            os.path.join(folder, "bars.png"), ylabel=f"{key} % (mean ± std over seeds)",
            title=summary["source"])
    if summary["distractors"]:
        d = summary["distractors"]
        files["curve"] = reports.plot_distractor_curve(
            d["gallery"], d["mAP"], d["rank1"], os.path.join(folder, "distractors.png"))
    return files
