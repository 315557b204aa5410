"""Result tables: a pandas DataFrame when pandas is installed, else a dict of arrays.

pandas is not a dependency of mixexp (it is in the ``test`` extra); the theory
toolkit returns DataFrames when it can and plain ``{column: ndarray}`` dicts
otherwise, and accepts either as input. Checkpoints are plain CSV files
written with the standard library.
"""

import csv
import math

import numpy as np


def _pandas():
    try:
        import pandas
    except ImportError:
        return None
    return pandas


def make_table(columns):
    """A DataFrame (pandas installed) or a dict of numpy arrays from ``{name: values}``."""
    columns = {k: np.asarray(v) for k, v in columns.items()}
    pd = _pandas()
    return pd.DataFrame(columns) if pd is not None else columns


def as_columns(table):
    """``{name: ndarray}`` from a DataFrame, a dict of arrays or a list of row dicts."""
    if isinstance(table, list):
        names = list(dict.fromkeys(k for row in table for k in row))
        return {k: np.asarray([row.get(k, np.nan) for row in table]) for k in names}
    if hasattr(table, "to_dict") and hasattr(table, "columns"):
        return {str(k): table[k].to_numpy() for k in table.columns}
    return {k: np.asarray(v) for k, v in dict(table).items()}


def table_rows(table):
    """The rows of a table (anything :func:`as_columns` takes) as a list of dicts."""
    cols = as_columns(table)
    n_rows = len(next(iter(cols.values()))) if cols else 0
    return [{k: v[i] for k, v in cols.items()} for i in range(n_rows)]


def write_table(path, table):
    """Write a table (anything :func:`as_columns` takes) to a new CSV file."""
    write_rows(path, table_rows(table), list(as_columns(table)))


def rows_to_table(rows, columns=None):
    """A table from a list of row dicts (columns in first-seen order, or ``columns``)."""
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    return make_table({k: [row.get(k, np.nan) for row in rows] for k in columns})


def _parse(value):
    if value in ("True", "False"):
        return value == "True"
    try:
        number = float(value)
    except ValueError:
        return value
    if number.is_integer() and value.lstrip("-").isdigit():
        return int(value)
    return number


def read_rows(path):
    """Rows (dicts) of a CSV written by :func:`append_row`, values parsed."""
    with open(path, newline="") as f:
        return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _format(value):
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)):
        return "nan" if math.isnan(value) else repr(float(value))
    if isinstance(value, (np.integer,)):
        return str(int(value))
    return str(value)


def append_row(path, row, columns):
    """Append one row to a CSV file, writing the header first if the file is new or empty."""
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(columns)
        writer.writerow([_format(row.get(k, float("nan"))) for k in columns])
        f.flush()


def write_rows(path, rows, columns):
    """Write rows to a new CSV file (replacing it)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_format(row.get(k, float("nan"))) for k in columns])
