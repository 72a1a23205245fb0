"""Data files: a CSV with a header, a ``.npy`` 2-D array or a ``.npz`` of named arrays, as X and y.

Every refusal is a :class:`~pyfit.DataError` naming the file and, where there is
one, the row and the column. CSV rows are numbered as the file's lines (the
header is line 1), so ``row 7`` is what an editor shows as line 7; arrays have
no lines, and their rows are numbered from 1.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from typing import IO, Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import DataError

# cells that spell "no value"; refused with the row and column rather than read as NaN
MISSING = {"", "na", "n/a", "nan", "null", "none", "-"}


@dataclass
class Table:
    """A data file's columns by name, as strings (CSV) or numbers (arrays), and where each row came from."""

    path: str
    names: List[str]
    cells: Union[List[List[str]], np.ndarray]  # CSV: rows of strings; arrays: (N, C) numbers
    lines: Sequence[int]  # the 1-based row number a user sees, for each row

    def column(self, name: str, role: str = "column", dtype: Any = None) -> np.ndarray:
        """One column as float64 (N,), refusing unknown names, missing and non-numeric cells.

        ``dtype`` is the float dtype the fit computes in: a value too large for it
        (1e308 is finite in float64, inf in float32) is refused with its row too.
        """
        limit = _largest(dtype)
        if name not in self.names:
            raise DataError(f"{self.path}: unknown {role} {name!r}; available columns: {', '.join(self.names)}")
        j = self.names.index(name)
        if isinstance(self.cells, np.ndarray):
            values = self.cells[:, j].astype(np.float64)
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                what = "missing value (NaN)" if math.isnan(values[bad[0]]) else f"non-finite value {values[bad[0]]}"
                raise DataError(f"{self.path}: {what} at row {self.lines[bad[0]]}, column {name!r}")
            large = np.flatnonzero(np.abs(values) > limit)
            if large.size:
                raise DataError(_too_large(self.path, values[large[0]], self.lines[large[0]], name, dtype))
            return values
        values = np.empty(len(self.cells), dtype=np.float64)
        for i, row in enumerate(self.cells):
            cell = row[j].strip()
            if cell.lower() in MISSING:
                raise DataError(f"{self.path}: missing value at row {self.lines[i]}, column {name!r}")
            try:
                value = float(cell)
            except ValueError:
                raise DataError(f"{self.path}: non-numeric value {cell!r} at row {self.lines[i]}, column "
                                f"{name!r}; expected a number") from None
            if not math.isfinite(value):
                raise DataError(f"{self.path}: non-finite value {cell!r} at row {self.lines[i]}, column {name!r}")
            if abs(value) > limit:
                raise DataError(_too_large(self.path, cell, self.lines[i], name, dtype))
            values[i] = value
        return values

    def columns(self, names: Sequence[str], role: str = "column", dtype: Any = None) -> np.ndarray:
        """Several columns as a float64 (N, len(names)) array."""
        return np.stack([self.column(name, role, dtype) for name in names], axis=1) if names else \
            np.empty((len(self.lines), 0))


def _largest(dtype: Any) -> float:
    """The largest finite magnitude of a float dtype, torch's or numpy's (inf for None)."""
    if dtype is None:
        return math.inf
    import torch

    return float(torch.finfo(dtype).max if isinstance(dtype, torch.dtype) else np.finfo(dtype).max)


def _too_large(path: str, value: Any, line: int, name: str, dtype: Any) -> str:
    label = str(dtype).replace("torch.", "") if type(dtype).__module__ == "torch" else np.dtype(dtype).name
    return (f"{path}: value {value} at row {line}, column {name!r} is too large for {label}, the dtype the fit "
            f"computes in (the largest it holds is {_largest(dtype):.4g}); scale the column")


@dataclass
class Dataset:
    """Features and targets read from a file, with their column names."""

    X: np.ndarray  # (N, D) float64
    y: np.ndarray  # (N,) for one target column, (N, K) for several
    features: List[str]
    target: List[str]
    path: str


def csv_delimiter(path: str) -> str:
    return "\t" if path.lower().endswith((".tsv", ".tab")) else ","


def open_text(path: str) -> IO[str]:
    """A CSV file opened as the csv module needs it."""
    try:
        return open(path, newline="", encoding="utf-8-sig")  # -sig: drop a spreadsheet's BOM
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}") from None


def csv_records(path: str, lines: Iterable[str], first_line: int = 0) -> Iterator[Tuple[List[str], int]]:
    """The non-blank records of CSV text, each with the line it ends on (``first_line``: lines before ``lines``).

    Blank lines (often one at the end) are skipped; malformed CSV and bytes that are
    not UTF-8 are refused with the line.
    """
    reader = csv.reader(lines, delimiter=csv_delimiter(path))
    try:
        for record in reader:
            if any(cell.strip() for cell in record):
                yield record, first_line + reader.line_num
    except csv.Error as error:
        raise DataError(f"{path}: malformed CSV at row {first_line + reader.line_num}: {error}") from None
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not a UTF-8 text file: {error.reason} at byte {error.start}") from None


def csv_header(path: str, records: Iterator[Tuple[List[str], int]]) -> Tuple[List[str], int]:
    """The column names from the first record and its line, refusing no header, unnamed and repeated names."""
    first = next(records, None)
    if first is None:
        raise DataError(f"{path} is empty: expected a header line of column names, then rows of numbers")
    header, header_line = first
    names = [name.strip() for name in header]
    seen = set()
    for k, name in enumerate(names):
        if not name:
            raise DataError(f"{path}: column {k + 1} of the header (line {header_line}) has no name")
        if name in seen:
            raise DataError(f"{path}: column name {name!r} appears twice in the header")
        seen.add(name)
    return names, header_line


def csv_rows(path: str, records: Iterator[Tuple[List[str], int]],
             names: List[str]) -> Iterator[Tuple[List[str], int]]:
    """The data records after the header, refusing one whose number of fields is not the header's."""
    for row, line in records:
        if len(row) != len(names):
            raise DataError(f"{path}: row {line} has {len(row)} fields, but the header has "
                            f"{len(names)} ({', '.join(names)})")
        yield row, line


def no_rows_error(path: str, names: List[str]) -> DataError:
    return DataError(f"{path} has a header ({', '.join(names)}) but no rows of data")


def _read_csv(path: str) -> Table:
    with open_text(path) as handle:
        records = csv_records(path, handle)
        names, _ = csv_header(path, records)
        rows, lines = [], []
        for row, line in csv_rows(path, records, names):
            rows.append(row)
            lines.append(line)
    if not rows:
        raise no_rows_error(path, names)
    return Table(path, names, rows, lines)


def check_numeric_dtype(path: str, name: str, dtype: np.dtype) -> None:
    """Refuse an array of anything but real numbers (complex, strings, objects, records)."""
    if np.issubdtype(dtype, np.complexfloating):
        raise DataError(f"{path}: array {name!r} has complex dtype {dtype}; pyfit fits real numbers (store "
                        "the real and imaginary parts as two columns)")
    if not (np.issubdtype(dtype, np.number) or dtype == bool):
        raise DataError(f"{path}: array {name!r} has dtype {dtype}; expected numbers")


def _numeric(path: str, name: str, array: np.ndarray) -> np.ndarray:
    check_numeric_dtype(path, name, array.dtype)
    return array


def check_matrix_shape(path: str, shape: Tuple[int, ...]) -> None:
    """A ``.npy`` array must be 2-D (rows, columns) with at least one of each."""
    if len(shape) != 2:
        raise DataError(f"{path}: expected a 2-D array (rows, columns), got shape {shape}")
    if shape[0] == 0 or shape[1] == 0:
        raise DataError(f"{path} is empty: the array has shape {shape}")


def index_names(count: int) -> List[str]:
    """An array's columns are named by their index: "0", "1", ..."""
    return [str(j) for j in range(count)]


def _read_npy(path: str) -> Table:
    array = _numeric(path, "the array", np.load(path, allow_pickle=False))
    check_matrix_shape(path, array.shape)
    return Table(path, index_names(array.shape[1]), array, range(1, array.shape[0] + 1))


def _read_npz(path: str) -> Table:
    with np.load(path, allow_pickle=False) as archive:
        arrays: Dict[str, np.ndarray] = {name: _numeric(path, name, archive[name]) for name in archive.files}
    if not arrays:
        raise DataError(f"{path} is empty: it holds no arrays")
    if len(arrays) == 1 and next(iter(arrays.values())).ndim == 2:
        name, array = next(iter(arrays.items()))
        if array.shape[0] == 0 or array.shape[1] == 0:
            raise DataError(f"{path} is empty: the array {name!r} has shape {array.shape}")
        return Table(path, index_names(array.shape[1]), array, range(1, array.shape[0] + 1))
    shapes = {name: a.shape for name, a in arrays.items()}
    if any(a.ndim != 1 for a in arrays.values()):
        raise DataError(f"{path}: expected 1-D arrays (one per column) or a single 2-D array, got shapes {shapes}")
    lengths = {a.shape[0] for a in arrays.values()}
    if len(lengths) != 1:
        raise DataError(f"{path}: the columns have different lengths: {shapes}")
    n = lengths.pop()
    if n == 0:
        raise DataError(f"{path} is empty: its arrays have no rows")
    return Table(path, list(arrays), np.stack(list(arrays.values()), axis=1), range(1, n + 1))


def check_file(path: Any) -> str:
    """The path as a string, refusing one that is not a file or is empty."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"data file {path!r} does not exist")
    if os.path.getsize(path) == 0:
        raise DataError(f"{path} is empty (0 bytes)")
    return path


def read_table(path: str) -> Table:
    """Read a data file into a :class:`Table`, choosing the reader by the file's extension."""
    path = check_file(path)
    suffix = os.path.splitext(path)[1].lower()
    try:
        if suffix == ".npy":
            return _read_npy(path)
        if suffix == ".npz":
            return _read_npz(path)
    except DataError:
        raise
    except (ValueError, OSError, EOFError) as error:  # a truncated or foreign array file
        raise DataError(f"{path} is not a readable {suffix} file: {error}") from None
    return _read_csv(path)


def split_names(names: Union[None, str, Sequence[str]]) -> Optional[List[str]]:
    """``"a,b"`` or ``["a", "b"]`` as a list of column names (None stays None)."""
    if names is None:
        return None
    if isinstance(names, str):
        names = names.split(",")
    return [str(name).strip() for name in names if str(name).strip()]


def choose_columns(path: str, names: List[str], target: Union[str, Sequence[str]],
                   features: Union[None, str, Sequence[str]]) -> Tuple[List[str], List[str]]:
    """The feature and target column names (features default to every other column), all checked against ``names``.

    Refuses no target, no features left, a name given twice, a column that is both,
    and unknown names, before any cell is read.
    """
    targets = split_names(target)
    if not targets:
        raise DataError(f"{path}: no target column given; available columns: {', '.join(names)}")
    chosen = split_names(features)
    if chosen is None:
        chosen = [name for name in names if name not in targets]
    if not chosen:
        raise DataError(f"{path}: no feature columns left besides the target {', '.join(targets)}")
    for role, given in (("target", targets), ("feature", chosen)):
        repeated = sorted({name for name in given if given.count(name) > 1})
        if repeated:
            raise DataError(f"{path}: {role} column {repeated[0]!r} is named twice")
    both = [name for name in chosen if name in targets]
    if both:
        raise DataError(f"{path}: column {both[0]!r} is both a feature and a target; a model that is "
                        "given its target learns nothing")
    for name in targets + chosen:  # unknown names first, before any cell is read
        if name not in names:
            role = "target column" if name in targets else "feature column"
            raise DataError(f"{path}: unknown {role} {name!r}; available columns: {', '.join(names)}")
    return chosen, targets


def load_data(path: str, target: Union[str, Sequence[str]],
              features: Union[None, str, Sequence[str]] = None, *, dtype: Any = None) -> Dataset:
    """X and y from a data file: ``target`` names the y column(s), ``features`` the X columns (default: the rest).

    With ``dtype`` (the dtype the fit computes in, e.g. ``torch.float32``), values
    too large for it are refused with their row and column.

    >>> import os, tempfile, pyfit
    >>> path = os.path.join(tempfile.mkdtemp(), "points.csv")
    >>> _ = open(path, "w").write("x,y\\n0,0.8\\n1,3.8\\n")
    >>> data = pyfit.load_data(path, target="y")
    >>> data.X.shape, data.y.tolist(), data.features
    ((2, 1), [0.8, 3.8], ['x'])
    """
    table = read_table(path)
    chosen, targets = choose_columns(table.path, table.names, target, features)
    X = table.columns(chosen, "feature column", dtype)
    y = table.columns(targets, "target column", dtype)
    return Dataset(X, y[:, 0] if len(targets) == 1 else y, chosen, targets, table.path)


def load_features(path: str, features: Union[None, str, Sequence[str]], *, dtype: Any = None) -> np.ndarray:
    """Just the feature columns of a data file, (N, D) float64, for predictions (``dtype`` as for load_data)."""
    table = read_table(path)
    chosen = split_names(features) or table.names
    return table.columns(chosen, "feature column", dtype)
