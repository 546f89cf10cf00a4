"""The paper-style tables of a protocol's results: top-1 accuracy (%), mean ± sample std
over the seeds; the harmonic mean H = 2 B N / (B + N) of the mean base and novel accuracy
(CoCoOp computes H from the averages, not per seed); averages over data sets.

`Table` holds a table as text cells (for Markdown, HTML and the terminal); `tidy_rows` are
the numbers one row per method x data set x K x evaluated split (results.csv).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from clipadapt.protocols.protocol import Protocol
from clipadapt.protocols.runner import CellResult
from clipadapt.metrics.aggregate import format_mean_std, mean_std

METRIC = "accuracy"  # what the papers report: top-1 accuracy on the test split


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)
    text_columns: int = 2  # the leading columns that name things (left-aligned); the rest are numbers

    def markdown(self) -> str:
        lines = [f"**{self.title}**", "", "| " + " | ".join(self.header) + " |",
                 "|" + "|".join("---" if i < self.text_columns else "---:" for i in range(len(self.header))) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines + ([""] + [f"{n}" for n in self.notes] if self.notes else []))


def harmonic_mean(base: float, novel: float) -> float:
    """H = 2 B N / (B + N) (0 when both are 0)."""
    return 2 * base * novel / (base + novel) if base + novel > 0 else 0.0


def collect(results: list[CellResult]) -> dict[tuple, dict[str, list[float]]]:
    """(dataset, method, shots) -> evaluated split -> accuracy per seed (zero-shot: shots None)."""
    grouped: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        for split, scores in r.scores.items():
            grouped[(r.cell.dataset, r.cell.method, r.cell.shots)][split].append(scores[METRIC])
    return grouped


def _mean(values: list[float]) -> str:
    summary = mean_std(values)
    return format_mean_std(summary["mean"], summary["std"])


def _values(grouped, dataset: str, method: str, shots: int | None, split: str) -> list[float] | None:
    """A method's accuracies at K (a zero-shot method: its one score, whatever K)."""
    for key in ((dataset, method, shots), (dataset, method, None)):
        if key in grouped and grouped[key].get(split):
            return grouped[key][split]
    return None


def tables(protocol: Protocol, results: list[CellResult]) -> list[Table]:
    grouped = collect(results)
    return {"few_shot": _few_shot, "base_to_novel": _base_to_novel, "transfer": _transfer}[protocol.kind](
        protocol, grouped)


def _few_shot(protocol: Protocol, grouped) -> list[Table]:
    header = ["data set", "method", *(f"{k} shot{'s' if k > 1 else ''}" for k in protocol.shots)]
    rows, averages = [], []
    for dataset in protocol.datasets:
        for method in protocol.methods:
            cells = [_values(grouped, dataset, method, k, "test") for k in protocol.shots]
            rows.append([dataset, method, *(_mean(v) if v else "-" for v in cells)])
    if len(protocol.datasets) > 1:
        for method in protocol.methods:
            means = []
            for k in protocol.shots:
                found = [_values(grouped, d, method, k, "test") for d in protocol.datasets]
                means.append(f"{100 * sum(mean_std(v)['mean'] for v in found) / len(found):.2f}"
                             if all(found) else "-")
            averages.append([f"average of {len(protocol.datasets)}", method, *means])
    notes = [f"Top-1 test accuracy (%), mean ± std over seeds {', '.join(map(str, protocol.seeds))}; "
             "a method that reads no training images (zeroshot) has one score, shown at every K."]
    return [Table("Few-shot classification", header, rows + averages, notes)]


def _base_to_novel(protocol: Protocol, grouped) -> list[Table]:
    (k,) = protocol.shots
    header = ["data set", "method", "base", "novel", "H"]
    rows, sums = [], defaultdict(lambda: [0.0, 0.0, 0])
    for dataset in protocol.datasets:
        for method in protocol.methods:
            base = _values(grouped, dataset, method, k, "test")
            novel = _values(grouped, dataset, method, k, "novel")
            if not (base and novel):
                rows.append([dataset, method, _mean(base) if base else "-", _mean(novel) if novel else "-", "-"])
                continue
            b, n = mean_std(base)["mean"], mean_std(novel)["mean"]
            rows.append([dataset, method, _mean(base), _mean(novel), f"{100 * harmonic_mean(b, n):.2f}"])
            sums[method][0] += b
            sums[method][1] += n
            sums[method][2] += 1
    if len(protocol.datasets) > 1:
        for method in protocol.methods:
            b, n, count = sums[method]
            if count == len(protocol.datasets):
                b, n = b / count, n / count
                rows.append([f"average of {count}", method, f"{100 * b:.2f}", f"{100 * n:.2f}",
                             f"{100 * harmonic_mean(b, n):.2f}"])
    notes = [f"Trained on the base classes ({k} shots), scored on the base and the novel test classes: top-1 "
             f"accuracy (%), mean ± std over seeds {', '.join(map(str, protocol.seeds))}; H = 2 B N / (B + N) of "
             "the mean accuracies."]
    return [Table("Base-to-novel generalisation", header, rows, notes)]


def _transfer(protocol: Protocol, grouped) -> list[Table]:
    (k,) = protocol.shots
    source, targets = protocol.source, protocol.targets
    header = ["method", f"{source} (source)", *targets, "average (targets)"]
    rows = []
    for method in protocol.methods:
        own = _values(grouped, source, method, k, "test")
        found = [_values(grouped, source, method, k, t) for t in targets]
        average = (f"{100 * sum(mean_std(v)['mean'] for v in found) / len(found):.2f}" if all(found) else "-")
        rows.append([method, _mean(own) if own else "-", *(_mean(v) if v else "-" for v in found), average])
    notes = [f"Trained on {source} ({k} shots), scored on each data set's test split with its own class names: "
             f"top-1 accuracy (%), mean ± std over seeds {', '.join(map(str, protocol.seeds))}."]
    return [Table("Cross-data-set transfer", header, rows, notes, text_columns=1)]


def tidy_rows(protocol: Protocol, results: list[CellResult]) -> list[dict]:
    """One row per data set x method x K x evaluated split: mean, std, n and the values (%)."""
    rows = []
    for (dataset, method, shots), splits in collect(results).items():
        for split, values in splits.items():
            summary = mean_std(values)
            rows.append({"protocol": protocol.kind, "dataset": dataset, "method": method,
                         "shots": 0 if shots is None else shots, "scored_on": _scored_on(protocol.kind, dataset, split),
                         "metric": METRIC, "mean": round(100 * summary["mean"], 4),
                         "std": round(100 * summary["std"], 4), "n": summary["n"],
                         "values": ";".join(f"{100 * v:.4f}" for v in values)})
        if protocol.kind == "base_to_novel" and splits.get("test") and splits.get("novel"):
            h = harmonic_mean(mean_std(splits["test"])["mean"], mean_std(splits["novel"])["mean"])
            rows.append({"protocol": protocol.kind, "dataset": dataset, "method": method,
                         "shots": 0 if shots is None else shots, "scored_on": "H (harmonic mean)", "metric": METRIC,
                         "mean": round(100 * h, 4), "std": "", "n": "", "values": ""})
    return rows


def _scored_on(kind: str, dataset: str, split: str) -> str:
    """What a score was measured on: base / novel, a data set's name (transfer), or test."""
    if split != "test":
        return split
    return {"base_to_novel": "base", "transfer": dataset}.get(kind, "test")
