"""The anomaly benchmark's page: docs/benchmarks/anomaly.md, written from every record that
`benchmarks/anomaly.py tabular|images` left beside it (anomaly_tabular*.json, anomaly_mnist*.json,
anomaly_fashion-mnist*.json).

Records of several invocations (other datasets, seeds or detectors) are combined per part: a row is
(dataset, method, seed), and where two records hold the same one, the later record's (its "written"
time; records without one count as oldest) is kept. The tables use the seeds that every method has on
every set, so that each mean is over the same splits. An image record's aevb columns are named by the
settings it ran with as they are named today (`anomaly_settings.settings_then`): a "default" record of earlier
image defaults under those defaults' settings, a record whose settings are today's defaults as the default.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from aevb.anomaly.scores import COMPLEXITY_WEIGHT_DEFAULT
from aevb.files import atomic_write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, also when imported by tests
from anomaly_settings import AEVB_SETTINGS, recorded_settings, settings_then  # noqa: E402


def _complexity(weight: float) -> str:
    """The column of the complexity score log p(x) + μ L(x) ln 2 with μ = `weight`."""
    return f"aevb complexity μ={weight:g}"


AEVB_SCORES = {
    "log-likelihood": "aevb log p(x)",
    "elbo": "aevb ELBO",
    "reconstruction": "aevb recon. prob.",
    "complexity": _complexity(COMPLEXITY_WEIGHT_DEFAULT),  # the detector's default μ
    "likelihood-ratio": "aevb likelihood ratio",
    "latent-knn": "aevb latent knn",
    "latent-lof": "aevb latent lof",
    "latent-gmm": "aevb latent gmm",
    "combined": "aevb combined",
}
# the records written before the complexity score had a weight named it so; it added the whole code length (μ = 1)
OLD_LABELS = {"aevb complexity": _complexity(1.0)}
TABLE_SCORES = ("log-likelihood", "elbo", "reconstruction")  # the scores `tabular` records
IMAGE_SCORES = ("combined", "complexity", *TABLE_SCORES)  # and `images`: AnomalyDetector()'s score on images first
# The aevb column ranked against the peers (one entry, a fair count): AnomalyDetector()'s default score on images
# where a part has it (the records before it have the default of their time, the tempered complexity score), else
# log p(x), the default on tables (whose code length is 0).
AEVB_HEAD = (AEVB_SCORES["combined"], AEVB_SCORES["complexity"], AEVB_SCORES["log-likelihood"])
AEVB = AEVB_HEAD[-1]

PEER_ORDER = ("PyOD VAE", "IsolationForest", "PCA", "MCD", "HBOS", "COPOD", "ECOD", "KNN", "LOF")
WIN_MARGIN = 0.005  # first, or within this ROC-AUC of the first, counts as a win
PARTS = {
    "tabular": "ADBench classical tabular datasets",
    "mnist": "MNIST one-class-out",
    "fashion-mnist": "Fashion-MNIST one-class-out",
}


def aevb_label(score: str, settings: str = "default", complexity_weight: float = COMPLEXITY_WEIGHT_DEFAULT) -> str:
    """The column of aevb's `score` under the benchmark's `settings` (anomaly_images.AEVB_SETTINGS): the score's
    name (complexity's with the detector's weight μ) for the detector's defaults, else with the settings' name
    after it."""
    return with_settings(_complexity(complexity_weight) if score == "complexity" else AEVB_SCORES[score], settings)


def with_settings(name: str, settings: str) -> str:
    """The column of the aevb score column `name` under `settings`: `name` for the defaults, else the settings'
    name after it in brackets."""
    return name if settings == "default" else f"{name} ({settings})"


def current_label(method: str) -> str:
    """A record's method name as the page names it: OLD_LABELS renamed, with their settings kept."""
    name, sep, settings = method.partition(" (")
    return OLD_LABELS.get(name, name) + sep + settings


def head_column(methods: list[str]) -> str | None:
    """The aevb column of the head-to-head among `methods`: the first of AEVB_HEAD present, else None."""
    return next((m for m in AEVB_HEAD if m in methods), None)


def named_today(record: dict) -> dict:
    """An image record with its aevb rows relabelled by `settings_then`, the name kept as "aevb_as"; a copy."""
    now = settings_then(record)

    def label(method: str) -> str:
        return with_settings(method.partition(" (")[0], now) if method.startswith("aevb ") else method

    datasets = {
        name: {**d, "rows": [{**r, "method": label(r["method"])} for r in d["rows"]]}
        for name, d in record["datasets"].items()
    }
    return {**record, "datasets": datasets, "aevb_as": now}


def read_records(paths: list[Path]) -> list[dict]:
    """The JSON records at `paths`, oldest first (by their "written" time, then name)."""
    recs = [(json.loads(p.read_text()), p.name) for p in paths]
    return [r for r, _ in sorted(recs, key=lambda rn: (rn[0].get("written", ""), rn[1]))]


def merged_datasets(paths_or_records: list) -> dict[str, dict]:
    """{dataset: {n, d, anomalies, rows, by_seed}} over several records; a (method, seed) row in several records:
    the latest record's. n, d and anomalies are the latest record's; by_seed holds them for each seed, from the
    latest record with that seed (an image split is drawn anew for every seed)."""
    records = paths_or_records
    if records and isinstance(records[0], Path):
        records = read_records(records)
    out: dict[str, dict] = {}
    for rec in records:
        for name, d in rec["datasets"].items():
            rows = {(r["method"], r["seed"]): r for r in out.get(name, {}).get("rows", [])}
            renamed = ({**r, "method": current_label(r["method"])} for r in d["rows"])
            rows.update({(r["method"], r["seed"]): r for r in renamed})
            shape = {k: d[k] for k in ("n", "d", "anomalies")}
            by_seed = {**out.get(name, {}).get("by_seed", {}), **{r["seed"]: shape for r in d["rows"]}}
            out[name] = {**d, "rows": list(rows.values()), "by_seed": by_seed}
    return out


def shape_cells(d: dict, seeds: list[int]) -> str:
    """The "n | d | anomalies" cells of a set on `seeds`: their own splits' (by_seed, else the set's), a range
    where the seeds' splits differ."""
    per = [d["by_seed"][s] for s in seeds if s in d.get("by_seed", {})] or [d]

    def cell(key: str, fmt) -> str:
        lo, hi = min(p[key] for p in per), max(p[key] for p in per)
        return fmt(lo) if lo == hi else f"{fmt(lo)}–{fmt(hi)}"

    return " | ".join((cell("n", str), cell("d", str), cell("anomalies", lambda v: f"{v:.1%}")))


def seeds_on_every_set(datasets: dict[str, dict]) -> dict[str, set[int]]:
    """{method: the seeds it has on every set} for every method with a row (empty where none is on all sets)."""
    present = {r["method"] for d in datasets.values() for r in d["rows"]}
    return {
        m: set.intersection(*({r["seed"] for r in d["rows"] if r["method"] == m} for d in datasets.values()))
        for m in present
    }


def common(datasets: dict[str, dict]) -> tuple[list[str], list[int], list[str]]:
    """(methods on every set, in column order; the seeds all of them have on every set; methods left out: not run
    on every set, or not on the seed that most methods were run on)."""
    every = seeds_on_every_set(datasets)
    present = set(every)
    # the columns of other settings (`aevb_label`): by settings, then in the order of `labels`
    labels = list(dict.fromkeys([*AEVB_HEAD, *AEVB_SCORES.values(), *OLD_LABELS.values()]))  # the head first
    aevb = [m for m in present if m.startswith("aevb ") and m.split(" (")[0] in labels and m not in labels]
    aevb.sort(key=lambda m: (m.split(" (")[-1], labels.index(m.split(" (")[0])))
    order = [m for m in (*labels, *aevb, *PEER_ORDER) if m in present]
    order += sorted(present - set(order))
    on_all = {m: every[m] for m in order if every[m]}
    # the methods that have the seed most of them have (the smallest such seed): a method run only on other seeds
    # (confirming seeds the peers were not run on, say) is left out rather than leaving no seed to compare on
    counts = [(-sum(s in mine for mine in on_all.values()), s) for s in set().union(*on_all.values())]
    methods = [m for m in on_all if min(counts)[1] in on_all[m]] if counts else []
    seeds = set.intersection(*(on_all[m] for m in methods)) if methods else set()
    return methods, sorted(seeds), [m for m in order if m not in methods]


def on_seeds(datasets: dict[str, dict], only: list[int] | None) -> dict[str, dict]:
    """`datasets` with only the rows of the seeds `only` (all of them where it is None)."""
    if only is None:
        return datasets
    return {k: {**d, "rows": [r for r in d["rows"] if r["seed"] in only]} for k, d in datasets.items()}


def head_seeds(datasets: dict[str, dict]) -> tuple[list[str], list[int], list[str]]:
    """(methods, seeds, left out) of the head column's own seeds: the seeds the default score (`head_column`) has
    on every set, and every method that has all of them; as `common`, but for the seeds the default was run on
    rather than those most methods share. Empty where the head is not present."""
    on_all = seeds_on_every_set(datasets)
    present = set(on_all)
    head = head_column(sorted(present))
    if head is None:
        return [], [], []
    seeds = on_all[head]
    everything, _, _ = common(datasets)
    order = [*everything, *sorted(present - set(everything))]
    methods = [m for m in order if seeds and seeds <= on_all[m]]
    return methods, sorted(seeds), [m for m in order if m not in methods]


def summarize(datasets: dict[str, dict], methods: list[str], seeds: list[int]) -> dict:
    """{dataset: {method: {auc|ap|fit_s|score_s: (mean, std) over `seeds`}}}."""
    table = {}
    for name, d in datasets.items():
        table[name] = {}
        for m in methods:
            rs = [r for r in d["rows"] if r["method"] == m and r["seed"] in seeds]
            table[name][m] = {
                k: (float(np.mean([r[k] for r in rs])), float(np.std([r[k] for r in rs])))
                for k in ("auc", "ap", "fit_s", "score_s")
            }
    return table


def ranks(row: dict, methods: list[str]) -> dict[str, float]:
    """Each method's rank by mean ROC-AUC on one set (1 = best; ties share the mean rank)."""
    from scipy.stats import rankdata

    return dict(zip(methods, rankdata([-row[m]["auc"][0] for m in methods])))


def head_to_head(row: dict, methods: list[str]) -> dict[str, tuple[int, bool]]:
    """Per method of the head-to-head (aevb log p(x) and every peer): (rank by mean ROC-AUC, 1 = best; a win:
    first or within WIN_MARGIN of the best of the others)."""
    out = {}
    for m in methods:
        others = [row[o]["auc"][0] for o in methods if o != m]
        best_other = max(others, default=-np.inf)
        out[m] = (1 + sum(v > row[m]["auc"][0] for v in others), row[m]["auc"][0] >= best_other - WIN_MARGIN)
    return out


def tables(datasets: dict[str, dict], only: list[int] | None = None, chosen=None, level: str = "###") -> list[str]:
    """Markdown: ROC-AUC and AP per set (with aevb's rank), and the summary; the seeds they use (only: of
    these seeds). chosen: (methods, seeds, left out) instead of `common`'s; level: the headings' markdown."""
    datasets = on_seeds(datasets, only)
    methods, seeds, left_out = chosen if chosen is not None else common(datasets)
    if not methods or not seeds:
        return ["No seed was run by every method on every set: nothing to compare.", ""]
    table = summarize(datasets, methods, seeds)
    head = head_column(methods)
    h2h = [m for m in (head, *PEER_ORDER) if m in methods]
    lines = [f"Seeds: {', '.join(map(str, seeds))} (those every method below was run on, on every set)."]
    if left_out:
        lines[0] += f" Left out, as not run on every set or on these seeds: {', '.join(left_out)}."
    lines.append("")
    one = len(seeds) == 1
    for metric, label in (("auc", "ROC-AUC"), ("ap", "Average precision")):
        spread = "" if one else " (mean ± std over seeds)"
        lines += [f"{level} {label}{spread}; best in bold", ""]
        extra = f" | {head} rank |" if metric == "auc" and head is not None else " |"
        lines += [
            "| dataset | n | d | anomalies | " + " | ".join(methods) + extra,
            "|---|---:|---:|---:|" + "---:|" * (len(methods) + (extra != " |")),
        ]
        for name, row in table.items():
            d, best = datasets[name], max(row[m][metric][0] for m in methods)
            cells = []
            for m in methods:
                mean, std = row[m][metric]
                text = f"{mean:.3f}" if one else f"{mean:.3f} ± {std:.3f}"
                cells.append(f"**{text}**" if mean == best else text)
            if extra != " |":
                rank, win = head_to_head(row, h2h)[head]
                cells.append(f"{rank} of {len(h2h)}" + (" (win)" if win else ""))
            lines.append(f"| {name} | {shape_cells(d, seeds)} | " + " | ".join(cells) + " |")
        means = [np.mean([row[m][metric][0] for row in table.values()]) for m in methods]
        cells = [f"**{v:.3f}**" for v in means] + ([] if extra == " |" else [""])
        lines += ["| **mean** | | | | " + " | ".join(cells) + " |", ""]
    all_ranks = [ranks(row, methods) for row in table.values()]
    wins = {m: sum(head_to_head(row, h2h)[m][1] for row in table.values()) for m in h2h}
    lines += [
        f"{level} Summary",
        "",
        f"Wins: first by mean ROC-AUC among {', '.join(h2h)}, or within {WIN_MARGIN} of "
        "the first. Times: mean over sets of the mean seconds per fit and per scoring of the test part.",
        "",
        "| method | mean ROC-AUC | mean AP | mean rank (all columns) | wins | fit s | score s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m in methods:
        mean = {k: np.mean([row[m][k][0] for row in table.values()]) for k in ("auc", "ap", "fit_s", "score_s")}
        rank = np.mean([r[m] for r in all_ranks])
        win = f"{wins[m]} of {len(table)}" if m in wins else ""
        lines.append(
            f"| {m} | {mean['auc']:.3f} | {mean['ap']:.3f} | {rank:.2f} | {win} | {mean['fit_s']:.2f} | "
            f"{mean['score_s']:.2f} |"
        )
    return lines + [""]


def text_table(datasets: dict[str, dict]) -> str:
    """The ROC-AUC table and the summary of one record's datasets, for the terminal."""
    lines = tables(datasets)
    start = lines.index(next(x for x in lines if x.startswith("### ROC-AUC")))
    ap = lines.index(next(x for x in lines if x.startswith("### Average precision")))
    summary = lines.index("### Summary")
    return "\n".join(lines[:1] + lines[start:ap] + lines[summary:])


def aevb_settings(record: dict) -> str:
    """What aevb ran with in `record`: the settings' name (records before names: "legacy" when they set any
    parameter, as the first image records did) and the AnomalyDetector parameters besides random_state; for an
    image record named otherwise today (`named_today`), that name too, and for earlier defaults their parameters
    written out."""
    kw, name = record.get("aevb") or {}, recorded_settings(record)
    now = record.get("aevb_as", name)
    if now != name and name == "default":
        kw, name = {**AEVB_SETTINGS[now], **kw}, f"default of its time, written out as {now}"
    elif now != name:
        name = f"{name}, today's default on these images"
    params = ", ".join(f"{k}={v!r}" for k, v in kw.items())
    return f"aevb settings {name}: `AnomalyDetector(random_state=seed{', ' if params else ''}{params})`"


def section(title: str, records: list[dict], only: list[int] | None = None) -> list[str]:
    """One part's section: the commands of its records, then its tables."""
    protocols = {json.dumps({k: r.get(k) for k in ("train_rows", "test_rows")}) for r in records}
    if len(protocols) > 1:  # other subsets of the images: their rows are not on the same splits
        sys.exit(f"{title}: records with different train_rows/test_rows ({protocols}); remove all but one kind")
    lines = [f"## {title}", "", "Records (oldest first; a row in several records is the latest one's):", ""]
    for r in records:
        what = f"detectors {', '.join(r['detectors'])}" if "detectors" in r else "aevb and its baselines"
        if "aevb" in r.get("detectors", ["aevb"]):
            what += f"; {aevb_settings(r)}"
        lines.append(f"- `{r['command']}` ({r.get('written', 'before the records had times')}; {what})")
        if r.get("baselines_from"):
            copied = " ; ".join(r["baselines_from"]["commands"])
            lines.append(f"  - its PyOD VAE, IsolationForest and PCA rows copied from `{copied}`")
    vs = {json.dumps(r["versions"]) for r in records if "versions" in r}
    lines += [""] + ["Versions: " + ", ".join(f"{k} {v}" for k, v in json.loads(v).items()) + "." for v in sorted(vs)]
    datasets = merged_datasets(records)
    if all(name.split("_")[0].isdigit() for name in datasets):  # ADBench: in the sets' numeric order
        datasets = dict(sorted(datasets.items(), key=lambda kv: int(kv[0].split("_")[0])))
    lines += [""] + tables(datasets, only)
    datasets = on_seeds(datasets, only)
    wide = head_seeds(datasets)
    if len(wide[1]) > len(common(datasets)[1]):  # the default was run on more seeds than every method shares
        head = head_column(wide[0])
        lines += [f"### {head} on all its seeds, with every method run on them", ""]
        lines += tables(datasets, chosen=wide, level="####")
    return lines


def report(docs: Path, only: list[int] | None = None) -> None:
    """Write docs/anomaly.md from the records in `docs` and print each part's tables; only: print the tables
    on these seeds alone and write nothing."""
    lines = [
        "# Anomaly detection benchmark",
        "",
        "Written by `python benchmarks/anomaly.py report` from the JSON records beside this page; every number "
        "below was measured in the runs whose commands are shown.",
        "",
    ]
    for part, title in PARTS.items():
        records = read_records(sorted(docs.glob(f"anomaly_{part}*.json")))
        if part != "tabular":  # the image defaults changed over time; the tables' did not
            records = [named_today(r) for r in records]
        if records:
            body = section(title, records, only)
            print("\n".join(body))
            lines += body
    if only is not None:
        return
    notes = docs / "anomaly_notes.md"
    if notes.exists():
        lines += [notes.read_text()]
    atomic_write_text(docs / "anomaly.md", "\n".join(lines) + "\n")
    print(f"wrote {docs / 'anomaly.md'}")
