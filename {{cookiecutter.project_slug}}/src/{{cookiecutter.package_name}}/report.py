"""A one-page HTML report of an evaluation: what the gate compared, and why.

It shows, from evaluation.json: the project and the commit; every metric of the model beside
the majority-class baseline, the production model (the champion) and the floors the gate
applies; the decision threshold and the class balance of the test rows; the confusion
matrix; the ROC curve with the chance line and the precision-recall curve with the
class-balance line (the figures SageMaker Studio plots from the registered package's
model-quality metrics); and the permutation importance of each feature. The plots are inline
SVG: no plotting library, no network.
"""

import html

REPORT_FILE_NAME = "report.html"
SIZE = 280  # plot side, pixels
MARGIN = 40
BAR_HEIGHT = 18
BAR_WIDTH = 260
STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:60em}"
    "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;"
    "padding:4px 10px;text-align:right}th:first-child{text-align:left}"
    ".fail{color:#b00020;font-weight:bold}svg{margin:0 1em 1em 0}"
)


def _escape(value: object) -> str:
    return html.escape(str(value))


def _text(x: float, y: float, content: str, anchor: str = "middle", extra: str = "") -> str:
    return f'<text x="{x:.0f}" y="{y:.0f}" text-anchor="{anchor}"{extra}>{_escape(content)}</text>'


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def curve_svg(
    title: str,
    xs: list[float],
    ys: list[float],
    x_label: str,
    y_label: str,
    reference: tuple[tuple[float, float], tuple[float, float], str] | None = None,
) -> str:
    """A square plot of one curve on [0, 1] x [0, 1], with axes, ticks and labels, and a
    dashed reference line ((x0, y0), (x1, y1), its label)."""
    side = SIZE + 2 * MARGIN

    def point(x: float, y: float) -> str:
        return f"{MARGIN + x * SIZE:.1f},{MARGIN + (1 - y) * SIZE:.1f}"

    points = " ".join(point(x, y) for x, y in zip(xs, ys, strict=True))
    ticks = "".join(
        _text(MARGIN + t * SIZE, MARGIN + SIZE + 14, f"{t:g}")
        + _text(MARGIN - 6, MARGIN + (1 - t) * SIZE + 4, f"{t:g}", anchor="end")
        for t in (0, 0.5, 1)
    )
    line = ""
    if reference is not None:
        start, end, label = reference
        line = (
            f'<polyline fill="none" stroke="#999" stroke-dasharray="4 3" '
            f'points="{point(*start)} {point(*end)}"><title>{_escape(label)}</title></polyline>'
            + _text(
                MARGIN + SIZE - 4,
                MARGIN + (1 - end[1]) * SIZE - 4,
                label,
                anchor="end",
                extra=' fill="#666"',
            )
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{side}" height="{side}" '
        f'font-family="sans-serif" font-size="11" role="img" aria-label="{_escape(title)}">'
        + _text(side / 2, 16, title, extra=' font-size="13"')
        + f'<rect x="{MARGIN}" y="{MARGIN}" width="{SIZE}" height="{SIZE}" '
        'fill="none" stroke="#999"/>'
        + ticks
        + line
        + f'<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{points}"/>'
        + _text(side / 2, side - 6, x_label)
        + _text(0, 0, y_label, extra=f' transform="translate(12,{side / 2:.0f}) rotate(-90)"')
        + "</svg>"
    )


def importance_svg(importance: dict[str, float]) -> str:
    """Horizontal bars: the AUC each feature loses when shuffled, largest first."""
    ranked = sorted(importance.items(), key=lambda item: item[1], reverse=True)
    largest = max([abs(value) for _, value in ranked] + [1e-9])
    label_width = 12 + 7 * max(len(name) for name, _ in ranked)
    width, height = label_width + BAR_WIDTH + 70, BAR_HEIGHT * len(ranked) + 10
    bars = ""
    for row, (name, value) in enumerate(ranked):
        y = 5 + row * BAR_HEIGHT
        length = max(value, 0) / largest * BAR_WIDTH
        bars += (
            _text(label_width - 6, y + 13, name, anchor="end")
            + f'<rect x="{label_width}" y="{y + 3}" width="{length:.1f}" '
            f'height="{BAR_HEIGHT - 6}" fill="#1f77b4"/>'
            + _text(label_width + length + 6, y + 13, f"{value:.4f}", anchor="start")
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="11" role="img" '
        f'aria-label="Permutation importance">{bars}</svg>'
    )


def confusion_table(matrix: dict) -> str:
    """The confusion matrix as an HTML table: rows actual, columns predicted."""
    classes = list(matrix)
    head = "".join(f"<th>predicted {_escape(name)}</th>" for name in classes)
    rows = "".join(
        f"<tr><th>actual {_escape(actual)}</th>"
        + "".join(f"<td>{matrix[actual].get(guess, 0)}</td>" for guess in classes)
        + "</tr>"
        for actual in classes
    )
    return f"<table><tr><th></th>{head}</tr>{rows}</table>"


def metrics_table(evaluation: dict, metric: str | None, threshold: float | None) -> str:
    """Each metric: the model, the baseline, the champion, the floors; the gated one marked."""
    found = evaluation["binary_classification_metrics"]
    baseline = evaluation.get("majority_class_baseline", {})
    champion = (evaluation.get("champion") or {}).get("metrics") or {}
    floors = evaluation.get("quality_gate", {})
    rows = ""
    for name, value in found.items():
        if not (isinstance(value, dict) and "value" in value):
            continue
        gate = floors.get(name, {})
        needed = [gate.get("baseline_floor"), gate.get("champion_floor") if champion else None]
        if name == metric and threshold is not None:
            needed.append(threshold)
        floor = max((item for item in needed if item is not None), default=None)
        below = floor is not None and value["value"] < floor
        mark = " (gated)" if name == metric else ""
        rows += (
            f"<tr><th>{_escape(name)}{mark}</th>"
            f"<td{' class=fail' if below and name == metric else ''}>{value['value']:.4f}</td>"
            f"<td>{_number(baseline.get(name))}</td><td>{_number(champion.get(name))}</td>"
            f"<td>{_number(floor)}</td></tr>"
        )
    return (
        "<table><tr><th>metric</th><th>this model</th><th>majority-class baseline</th>"
        f"<th>production model</th><th>needed</th></tr>{rows}</table>"
    )


def render(
    evaluation: dict,
    project: str = "",
    commit: str = "",
    metric: str | None = None,
    threshold: float | None = None,
) -> str:
    """The report page for an evaluation.json document."""
    found = evaluation["binary_classification_metrics"]
    details = evaluation.get("evaluation", {})
    balance = details.get("class_balance", {})
    rows = sum(balance.values()) or 1
    positive = list(balance)[-1] if balance else None
    positive_share = balance.get(positive, 0) / rows
    champion = evaluation.get("champion")
    facts = [
        ("Project", project),
        ("Commit", commit),
        ("Test rows", details.get("test_rows", "")),
        (
            "Class balance",
            ", ".join(
                f"{_escape(name)} {count} ({count / rows:.0%})" for name, count in balance.items()
            ),
        ),
        ("Decision threshold", details.get("decision_threshold", "")),
        ("Production model", (champion or {}).get("model") or "none"),
    ]
    if champion and champion.get("not_comparable"):
        facts.append(("Not compared", champion["not_comparable"]))
    if metric and metric in evaluation.get("quality_gate", {}):
        facts.append(
            (
                "Gate",
                f"{metric} must reach {threshold}; "
                + evaluation["quality_gate"][metric]["explanation"],
            )
        )
    facts_table = "".join(f"<tr><th>{_escape(k)}</th><td>{_escape(v)}</td></tr>" for k, v in facts)
    roc = found["receiver_operating_characteristic_curve"]
    pr = found["precision_recall_curve"]
    importance = details.get("feature_importance")
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Model evaluation: {_escape(project)}</title><style>{STYLE}</style></head><body>"
        f"<h1>Model evaluation (test split){': ' + _escape(project) if project else ''}</h1>"
        f"<table>{facts_table}</table>"
        f"<h2>Metrics</h2>{metrics_table(evaluation, metric, threshold)}"
        f"<h2>Confusion matrix</h2>{confusion_table(found['confusion_matrix'])}"
        "<h2>Curves</h2>"
        + curve_svg(
            "ROC curve",
            roc["false_positive_rates"],
            roc["true_positive_rates"],
            "false positive rate",
            "true positive rate",
            ((0, 0), (1, 1), "chance"),
        )
        + curve_svg(
            "Precision-recall curve",
            pr["recalls"],
            pr["precisions"],
            "recall",
            "precision",
            ((0, positive_share), (1, positive_share), f"class balance {positive_share:.2f}")
            if balance
            else None,
        )
        + (
            "<h2>Permutation importance (AUC lost when the feature is shuffled)</h2>"
            + importance_svg(importance)
            if importance
            else ""
        )
        + "</body></html>\n"
    )
