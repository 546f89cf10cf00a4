"""The report's attribute-search section: the `retrieval` scores of `clipadapt eval
--retrieval` (clipadapt.search.retrieval), one row per query beside its base rate."""

from __future__ import annotations

from html import escape

from clipadapt.report.sections import percent, section

COLUMNS = (("ap", "AP"), ("r@1", "R@1"), ("r@5", "R@5"), ("r@10", "R@10"), ("p@10", "P@10"))


def retrieval_section(metrics: dict | None) -> str:
    """The section, or "" when the evaluation scored no queries (no --retrieval)."""
    retrieval = (metrics or {}).get("retrieval")
    if not isinstance(retrieval, dict) or not retrieval.get("per_query"):
        return ""
    head = "".join(f'<th scope="col">{h}</th>' for h in ("query", "relevant / rows", "base rate",
                                                         *(title for _, title in COLUMNS)))
    rows = [_row(escape(q["query"]), f"{q['relevant']} / {q['rows']}", q, "ap") for q in retrieval["per_query"]]
    rows += [_row(f"mean, {size}-term queries ({m['queries']})", "", m, "map", "mean")
             for size, m in retrieval.get("by_terms", {}).items() if len(retrieval.get("by_terms", {})) > 1]
    mean = retrieval["mean"]
    rows.append(_row(f"mean of {mean['queries']} queries (mAP, mean R@k)", "", mean, "map", "mean"))
    skipped = retrieval.get("skipped") or []
    left = (f'<p class="note">Not scored (no labelled test row where it is true): '
            f'{escape(", ".join(q["query"] for q in skipped))}.</p>' if skipped else "")
    body = (f'<p>Queries: {escape(retrieval.get("queries_from", ""))}. Each query ranks the test images by its '
            'probability under the model (per-attribute probabilities combined as independent given the image: '
            'docs/search.md); an image is relevant when the query is true on its labels. AP: average precision; '
            f'R@k: {escape(retrieval.get("r@k", ""))}; P@10: share of relevant images in the top 10; a random '
            'ranking scores AP and P@10 near the base rate.</p>\n'
            f'<table>\n<caption>Scores in percent on the test split.</caption>\n<thead><tr>{head}</tr></thead>\n'
            '<tbody>\n' + "\n".join(rows) + '\n</tbody>\n</table>' + left)
    return section("retrieval", "Attribute search", body)


def _row(label: str, counts: str, scores: dict, ap_key: str, css: str = "") -> str:
    cells = "".join(f'<td class="num">{percent(scores.get(ap_key if key == "ap" else key))}</td>'
                    for key, _ in COLUMNS)
    return (f'<tr{f" class={css!r}" if css else ""}><th scope="row">{label}</th><td class="num">{counts}</td>'
            f'<td class="num">{percent(scores.get("base_rate"))}</td>{cells}</tr>')
