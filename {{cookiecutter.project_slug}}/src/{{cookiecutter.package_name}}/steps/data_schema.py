"""The model contract: the feature columns with their kind, the label column and its classes.

This is the one place that describes the table the model learns from. Preprocess, train,
evaluate, the inference module, the tests and the sample requests all derive from it. To use
your own table, change `load_dataset()` in `data.py` and this file, nothing else.

SageMaker runs this file inside the training job, next to train.py: it imports nothing from
the project package and runs on the framework image's Python (classifier.py names it).
"""

from __future__ import annotations

NUMERIC = "numeric"
CATEGORICAL = "categorical"

# The feature columns, in the order a text/csv request sends them, with their kind. Other
# columns of the table (an id, a date) are not features and are ignored.
FEATURES = {
    "tenure_months": NUMERIC,
    "monthly_charges": NUMERIC,
    "support_calls": NUMERIC,
    "contract": CATEGORICAL,
    "payment_method": CATEGORICAL,
    "internet_service": CATEGORICAL,
}
# The label column and its two values: the model scores the probability of POSITIVE_CLASS.
LABEL = "churned"
POSITIVE_CLASS = "yes"
NEGATIVE_CLASS = "no"


def problems() -> list[str]:
    """What is wrong with the declarations above (empty when they are usable)."""
    found = []
    if not FEATURES:
        found.append("FEATURES is empty: declare at least one feature column")
    for name, kind in FEATURES.items():
        if kind not in (NUMERIC, CATEGORICAL):
            found.append(f"feature {name!r} has kind {kind!r}: use NUMERIC or CATEGORICAL")
    if LABEL in FEATURES:
        found.append(f"the label column {LABEL!r} is also declared as a feature")
    if str(POSITIVE_CLASS) == str(NEGATIVE_CLASS):
        found.append("POSITIVE_CLASS and NEGATIVE_CLASS are the same value")
    return found
