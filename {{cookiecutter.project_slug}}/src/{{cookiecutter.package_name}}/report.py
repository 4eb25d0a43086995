"""A one-page HTML report of an evaluation: metrics, confusion matrix, ROC and PR curves.

The plots are inline SVG drawn from evaluation.json (the same figures SageMaker Studio plots
from the registered package's model-quality metrics): no plotting library, no network.
"""

import html

REPORT_FILE_NAME = "report.html"
SIZE = 280  # plot side, pixels
MARGIN = 40


def _text(x: float, y: float, content: str, anchor: str = "middle", extra: str = "") -> str:
    return (
        f'<text x="{x:.0f}" y="{y:.0f}" text-anchor="{anchor}"{extra}>'
        f"{html.escape(str(content))}</text>"
    )


def curve_svg(title: str, xs: list[float], ys: list[float], x_label: str, y_label: str) -> str:
    """A square plot of one curve on [0, 1] x [0, 1], with axes, ticks and labels."""
    side = SIZE + 2 * MARGIN
    points = " ".join(
        f"{MARGIN + x * SIZE:.1f},{MARGIN + (1 - y) * SIZE:.1f}"
        for x, y in zip(xs, ys, strict=True)
    )
    ticks = "".join(
        _text(MARGIN + t * SIZE, MARGIN + SIZE + 14, f"{t:g}")
        + _text(MARGIN - 6, MARGIN + (1 - t) * SIZE + 4, f"{t:g}", anchor="end")
        for t in (0, 0.5, 1)
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{side}" height="{side}" '
        f'font-family="sans-serif" font-size="11" role="img" aria-label="{html.escape(title)}">'
        + _text(side / 2, 16, title, extra=' font-size="13"')
        + f'<rect x="{MARGIN}" y="{MARGIN}" width="{SIZE}" height="{SIZE}" '
        'fill="none" stroke="#999"/>'
        + ticks
        + f'<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{points}"/>'
        + _text(side / 2, side - 6, x_label)
        + _text(0, 0, y_label, extra=f' transform="translate(12,{side / 2:.0f}) rotate(-90)"')
        + "</svg>"
    )


def confusion_table(matrix: dict) -> str:
    """The confusion matrix as an HTML table: rows actual, columns predicted."""
    classes = list(matrix)
    head = "".join(f"<th>predicted {html.escape(name)}</th>" for name in classes)
    rows = "".join(
        f"<tr><th>actual {html.escape(actual)}</th>"
        + "".join(f"<td>{matrix[actual].get(guess, 0)}</td>" for guess in classes)
        + "</tr>"
        for actual in classes
    )
    return f"<table><tr><th></th>{head}</tr>{rows}</table>"


def render(evaluation: dict) -> str:
    """The report page for an evaluation.json document."""
    found = evaluation["binary_classification_metrics"]
    values = "".join(
        f"<tr><th>{html.escape(name)}</th><td>{metric['value']:.4f}</td></tr>"
        for name, metric in found.items()
        if isinstance(metric, dict) and "value" in metric
    )
    roc = found["receiver_operating_characteristic_curve"]
    pr = found["precision_recall_curve"]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>Model evaluation</title><style>body{font-family:sans-serif;margin:2em}"
        "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;"
        "padding:4px 10px;text-align:right}</style></head><body>"
        "<h1>Model evaluation (test split)</h1>"
        f"<table>{values}</table>"
        f"<h2>Confusion matrix</h2>{confusion_table(found['confusion_matrix'])}"
        + curve_svg(
            "ROC curve",
            roc["false_positive_rates"],
            roc["true_positive_rates"],
            "false positive rate",
            "true positive rate",
        )
        + curve_svg(
            "Precision-recall curve", pr["recalls"], pr["precisions"], "recall", "precision"
        )
        + "</body></html>\n"
    )
