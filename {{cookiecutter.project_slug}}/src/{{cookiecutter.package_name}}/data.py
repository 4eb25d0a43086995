"""The data loader: the table the model learns from, as one CSV with a header row.

The default table is synthetic: customers of a subscription service, made by the seeded
generator below (same bytes on every run, nothing downloaded), with a few monthly charges
missing, as in real exports.

To use your own table, make `load_dataset()` return it (a pandas DataFrame holding the columns
that `steps/data_schema.py` declares) and declare its columns there: `make data`, the local
pipeline and the data set `upsert` publishes all come from this one function. A file it
reads must be committed (outside data/, which git ignores) to reach CI; larger data lives in
S3 under the new-data prefix instead (README, "Your data"). `make data SRC=<file or
s3 URI>` copies a table into data/ for local runs without any edit (`read_table`).
"""

from pathlib import Path

import numpy as np
import pandas as pd

from .steps import data_schema

DATASET_FILE_NAME = "dataset.csv"
SAMPLE_ROWS = 1500
SAMPLE_SEED = 7

CONTRACTS = {"month-to-month": 1.5, "one-year": -0.5, "two-year": -2.0}
PAYMENT_METHODS = {
    "card": -0.3,
    "bank-transfer": -0.3,
    "electronic-check": 0.5,
    "mailed-check": 0.0,
}
INTERNET_SERVICES = {"fiber": 0.6, "dsl": 0.0, "none": -0.8}


def synthetic_churn(rows: int = SAMPLE_ROWS, seed: int = SAMPLE_SEED) -> pd.DataFrame:
    """A seeded synthetic churn table: an id, three numeric and three categorical columns."""
    rng = np.random.RandomState(seed)

    def pick(weights: dict[str, float]) -> np.ndarray:
        return rng.choice(list(weights), size=rows)

    contract, payment, internet = pick(CONTRACTS), pick(PAYMENT_METHODS), pick(INTERNET_SERVICES)
    tenure = rng.randint(1, 73, size=rows)
    charges = np.round(rng.uniform(18, 120, size=rows), 2)
    calls = rng.poisson(1.5, size=rows)
    logit = (
        -0.6
        + np.vectorize(CONTRACTS.get)(contract)
        + np.vectorize(PAYMENT_METHODS.get)(payment)
        + np.vectorize(INTERNET_SERVICES.get)(internet)
        - 0.05 * tenure
        + 0.012 * (charges - 60)
        + 0.6 * calls
        + rng.normal(scale=0.3, size=rows)
    )
    churned = rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))
    table = pd.DataFrame(
        {
            "customer_id": [f"C{number:05d}" for number in range(1, rows + 1)],
            "tenure_months": tenure,
            "monthly_charges": charges,
            "support_calls": calls,
            "contract": contract,
            "payment_method": payment,
            "internet_service": internet,
            "churned": np.where(churned, "yes", "no"),
        }
    )
    table.loc[rng.uniform(size=rows) < 0.01, "monthly_charges"] = np.nan
    return table


def load_dataset() -> pd.DataFrame:
    """The table the model learns from: the schema's feature columns and its label column."""
    return synthetic_churn()


def read_table(source: str) -> pd.DataFrame:
    """A table from a CSV file (compressed or not), an s3://bucket/key object, or every CSV
    under an s3://bucket/prefix/ (one table, as the pipeline reads its InputDataUrl)."""
    if not source.startswith("s3://"):
        return pd.read_csv(source)
    import io

    import boto3

    bucket, _, key = source[len("s3://") :].partition("/")
    s3 = boto3.client("s3")
    if key and not key.endswith("/"):
        keys = [key]
    else:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key)
        keys = [
            item["Key"]
            for page in pages
            for item in page.get("Contents", [])
            if item["Key"].endswith((".csv", ".csv.gz"))
        ]
        if not keys:
            raise FileNotFoundError(f"no .csv or .csv.gz object under {source}")
    tables = []
    for name in sorted(keys):
        body = s3.get_object(Bucket=bucket, Key=name)["Body"].read()
        compression = "gzip" if name.endswith(".gz") else None
        tables.append(pd.read_csv(io.BytesIO(body), compression=compression))
    return pd.concat(tables, ignore_index=True)


def checked_csv_bytes(table: pd.DataFrame, source: str = "load_dataset()") -> bytes:
    """The table as CSV bytes, once it holds every column the schema declares."""
    missing = [
        name for name in (*data_schema.FEATURES, data_schema.LABEL) if name not in table.columns
    ]
    if missing:
        raise ValueError(
            f"{source} returned no {', '.join(map(repr, missing))} column: "
            "make it return the columns steps/data_schema.py declares, or declare its columns there"
        )
    classes = (str(data_schema.POSITIVE_CLASS), str(data_schema.NEGATIVE_CLASS))
    labels = table[data_schema.LABEL].astype(str).str.strip()
    unknown = sorted(set(labels[~labels.isin(classes)]))
    if unknown:
        shown = ", ".join(map(repr, unknown[:3])) + (", ..." if len(unknown) > 3 else "")
        raise ValueError(
            f"{source}: {data_schema.LABEL!r} holds {shown} besides {classes[0]!r} and"
            f" {classes[1]!r}: set POSITIVE_CLASS and NEGATIVE_CLASS in steps/data_schema.py to"
            " the label's two values, or map them in load_dataset()"
        )
    return table.to_csv(index=False).encode()


def dataset_csv_bytes() -> bytes:
    """The data set as CSV bytes with a header row (identical on every run).

    A file load_dataset() cannot find is one ValueError naming it and the two places data
    can live, so a Build without the file says so in one line.
    """
    try:
        table = load_dataset()
    except FileNotFoundError as error:
        missing = error.filename or str(error)
        raise ValueError(
            f"load_dataset() found no {missing}: commit the file (outside data/, which git"
            " ignores) so that CI has it, or keep the data in S3 under the new-data prefix"
            " and train there (README, Your data)"
        ) from error
    return checked_csv_bytes(table)


def write_dataset(output_dir: Path, source: str | None = None) -> Path:
    """Write the CSV (load_dataset()'s table, or the table at source) into output_dir
    (created if missing) and return its path."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise NotADirectoryError(f"{output_dir} is a file: pass a directory to --output-dir")
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / DATASET_FILE_NAME
    if source is None:
        body = dataset_csv_bytes()
    else:
        try:
            table = read_table(source)
        except FileNotFoundError as error:
            raise ValueError(f"{source}: no such file ({error})") from error
        body = checked_csv_bytes(table, source)
    path.write_bytes(body)
    return path
