"""Data files read by row ranges and in chunks, so memory holds one chunk, never the whole file.

A :class:`RowFile` reads the formats :func:`pyfit.load_data` reads, with its checks
and messages, except ``.npz`` (a zip archive cannot be read by row ranges): a ``.npy``
2-D array, a CSV/TSV file with a header, or a directory of shards, every ``.npy`` or
every CSV/TSV file in it, taken in name order as one table. An error about a cell
names the shard and the row as :mod:`pyfit.data` numbers it in that shard.
"""

from __future__ import annotations

import bisect
import itertools
import os
from typing import Any, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from . import data
from .errors import DataError
from .validation import check_dtype, check_positive_int, check_row_range

# a CSV shard remembers where every SEEK_EVERY-th data row starts, so a read seeks
# near its first row and parses at most this many rows it does not keep
SEEK_EVERY = 4096

# what a parsed CSV row costs beyond its text, measured with sys.getsizeof: the list
# of cells (56 bytes + 8 per cell), a str object per cell (49 bytes + its characters),
# and the row's (cells, line) pair with the line number (~100 bytes)
_CSV_ROW_OVERHEAD = 156
_CSV_CELL_OVERHEAD = 57

# a column on its way into X or y passes through float64 arrays of one value per row:
# the values, their magnitudes for the range check and the finite test's mask
_COLUMN_TEMPORARY_BYTES = 17

SHARD_SUFFIXES = (".npy", ".csv", ".tsv", ".tab")


def _stamp(path: str, descriptor: Optional[int] = None) -> Tuple[int, int]:
    """The file's size and modification time, to notice a file changed under an open RowFile."""
    status = os.fstat(descriptor) if descriptor is not None else os.stat(path)
    return status.st_size, status.st_mtime_ns


def _check_unchanged(path: str, stamp: Tuple[int, int], descriptor: int) -> None:
    if _stamp(path, descriptor) != stamp:
        raise DataError(f"{path} changed since it was opened (its size or modification time differ); "
                        "open it again")


class _NpyShard:
    """A ``.npy`` file's rows, read with seek and readinto: no mapping, whose pages would count as resident."""

    def __init__(self, path: str):
        self.path = path
        self._stamp = _stamp(path)
        try:
            with open(path, "rb") as handle:
                version = np.lib.format.read_magic(handle)
                if version == (1, 0):
                    shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(handle)
                elif version == (2, 0):
                    shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(handle)
                else:
                    raise DataError(f"{path}: .npy format version {version[0]}.{version[1]} is used for "
                                    "record arrays only; expected a 2-D array of numbers")
                self._offset = handle.tell()
        except (ValueError, OSError, EOFError) as error:  # a truncated or foreign file
            raise DataError(f"{path} is not a readable .npy file: {error}") from None
        data.check_numeric_dtype(path, "the array", dtype)
        data.check_matrix_shape(path, shape)
        if fortran_order and min(shape) > 1:
            raise DataError(f"{path}: the array is stored in Fortran (column-major) order, where a range of rows "
                            "is scattered over the whole file; save it with "
                            "numpy.save(path, numpy.ascontiguousarray(array))")
        self.rows, columns = shape
        self.names = data.index_names(columns)
        self._dtype = dtype
        self._row_bytes = columns * dtype.itemsize
        needed = self._offset + self.rows * self._row_bytes
        if self._stamp[0] < needed:
            raise DataError(f"{path} is not a readable .npy file: it holds {self._stamp[0]} bytes, but an array of "
                            f"shape {shape} and dtype {dtype} needs {needed}")

    def bytes_per_row(self) -> float:
        return self._row_bytes

    def table(self, start: int, stop: int) -> data.Table:
        block = np.empty((stop - start, len(self.names)), dtype=self._dtype)
        target = memoryview(block.reshape(-1).view(np.uint8))
        with open(self.path, "rb", buffering=0) as handle:  # unbuffered: the bytes land in block, copied once
            _check_unchanged(self.path, self._stamp, handle.fileno())
            handle.seek(self._offset + start * self._row_bytes)
            filled = 0
            while filled < len(target):
                count = handle.readinto(target[filled:])
                if not count:
                    raise DataError(f"{self.path} ended before row {start + filled // self._row_bytes + 1}")
                filled += count
        return data.Table(self.path, self.names, block, range(start + 1, stop + 1))


class _CsvShard:
    """A CSV/TSV file's rows: one pass at open counts them and marks where every SEEK_EVERY-th one starts."""

    def __init__(self, path: str):
        self.path = path
        self._stamp = _stamp(path)
        with data.open_text(path) as handle:
            # readline, not iteration: a text file refuses tell() while it is being iterated
            records = data.csv_records(path, iter(handle.readline, ""))
            self.names, line = data.csv_header(path, records)
            self._marks = [(handle.tell(), line)]  # (position, lines before it) where data row k * SEEK_EVERY starts
            self.rows = 0
            for _, line in data.csv_rows(path, records, self.names):
                self.rows += 1
                if self.rows % SEEK_EVERY == 0:
                    self._marks.append((handle.tell(), line))
        if not self.rows:
            raise data.no_rows_error(path, self.names)

    def bytes_per_row(self) -> float:
        text = self._stamp[0] / self.rows
        return text + _CSV_ROW_OVERHEAD + len(self.names) * _CSV_CELL_OVERHEAD

    def table(self, start: int, stop: int) -> data.Table:
        mark = start // SEEK_EVERY
        position, line = self._marks[mark]
        skip = start - mark * SEEK_EVERY
        with data.open_text(self.path) as handle:
            _check_unchanged(self.path, self._stamp, handle.fileno())
            handle.seek(position)
            records = data.csv_records(self.path, iter(handle.readline, ""), first_line=line)
            picked = list(itertools.islice(data.csv_rows(self.path, records, self.names), skip, skip + stop - start))
        if len(picked) != stop - start:
            raise DataError(f"{self.path} has fewer rows than when it was opened; open it again")
        return data.Table(self.path, self.names, [row for row, _ in picked], [line for _, line in picked])


def _open_shard(path: str) -> Union[_NpyShard, _CsvShard]:
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".npz":
        raise DataError(f"{path}: a .npz archive cannot be read by row ranges; save its array with numpy.save as "
                        ".npy, or read it whole with pyfit.load_data")
    return _NpyShard(path) if suffix == ".npy" else _CsvShard(path)


def _shard_paths(directory: str) -> List[str]:
    """The directory's data files in name order, all ``.npy`` or all CSV/TSV; other files are ignored."""
    names = sorted(name for name in os.listdir(directory) if name.lower().endswith(SHARD_SUFFIXES)
                   and os.path.isfile(os.path.join(directory, name)))
    if not names:
        raise DataError(f"{directory}: the directory holds no data files (.npy, or .csv/.tsv)")
    arrays = [name for name in names if name.lower().endswith(".npy")]
    texts = [name for name in names if not name.lower().endswith(".npy")]
    if arrays and texts:
        raise DataError(f"{directory} mixes .npy files ({arrays[0]}, ...) with CSV/TSV files ({texts[0]}, ...); "
                        "a directory of shards holds one format")
    return [os.path.join(directory, name) for name in names]


def _open_shards(path: str) -> List[Union[_NpyShard, _CsvShard]]:
    if not os.path.isdir(path):
        return [_open_shard(data.check_file(path))]
    shards = [_open_shard(data.check_file(shard)) for shard in _shard_paths(path)]
    for shard in shards[1:]:
        if shard.names != shards[0].names:
            raise DataError(f"{shard.path}: its columns ({', '.join(shard.names)}) differ from those of "
                            f"{shards[0].path} ({', '.join(shards[0].names)}); the shards of {path} need the "
                            "same columns")
    return shards


def _fill(out: Tensor, table: data.Table, names: Sequence[str], role: str) -> None:
    """Write the named columns of a table into the columns of ``out``, one checked column at a time."""
    for j, name in enumerate(names):  # numpy's strided copy: torch's took 4x to 12x as long on 2 threads
        out.numpy()[:, j] = table.column(name, role, out.dtype)


class RowFile:
    """A data file, or a directory of shards, read by row ranges: X and y of a few rows at a time.

    Columns are chosen as :func:`pyfit.load_data` chooses them (``target``: the y
    column(s), ``features``: the X columns, default the rest) and checked when the
    file is opened; cells are checked as they are read. Peak memory is about the rows
    read at once (see :meth:`rows_per_chunk`), whatever the file's size.

    >>> import os, tempfile, numpy, pyfit
    >>> path = os.path.join(tempfile.mkdtemp(), "points.npy")
    >>> numpy.save(path, numpy.arange(12.0).reshape(4, 3))
    >>> rows = open_rows(path, target="2")
    >>> rows.rows, rows.features, rows.target
    (4, ['0', '1'], ['2'])
    >>> X, y = rows.read(1, 3)
    >>> X.tolist(), y.tolist()
    ([[3.0, 4.0], [6.0, 7.0]], [[5.0], [8.0]])
    """

    def __init__(self, path: Any, target: Union[str, Sequence[str]],
                 features: Union[None, str, Sequence[str]] = None, *, dtype: torch.dtype = torch.float32):
        check_dtype("dtype", dtype)
        self.path: str = os.fspath(path)
        self._shards = _open_shards(self.path)
        self.names: List[str] = self._shards[0].names
        self.features, self.target = data.choose_columns(self.path, self.names, target, features)
        self.dtype: torch.dtype = dtype
        self._firsts = list(itertools.accumulate((shard.rows for shard in self._shards), initial=0))
        self.rows: int = self._firsts[-1]

    def __repr__(self) -> str:
        return (f"RowFile({self.path!r}, rows={self.rows}, features={self.features}, target={self.target}, "
                f"dtype={self.dtype})")

    def read(self, start: int, stop: int) -> Tuple[Tensor, Tensor]:
        """Rows ``[start, stop)`` (0-based, over all shards) as X (n, D) and y (n, K), new tensors of ``dtype``."""
        check_row_range(start, stop, self.rows)
        count = stop - start
        X = torch.empty((count, len(self.features)), dtype=self.dtype)
        y = torch.empty((count, len(self.target)), dtype=self.dtype)
        shard_index = bisect.bisect_right(self._firsts, start) - 1
        at = start
        while at < stop:  # the range, shard by shard
            shard, first = self._shards[shard_index], self._firsts[shard_index]
            until = min(stop, first + shard.rows)
            table = shard.table(at - first, until - first)
            _fill(X[at - start:until - start], table, self.features, "feature column")
            _fill(y[at - start:until - start], table, self.target, "target column")
            at, shard_index = until, shard_index + 1
        return X, y

    def chunks(self, start: int, stop: int, chunk_rows: int) -> Iterator[Tuple[Tensor, Tensor]]:
        """:meth:`read` over ``[start, stop)`` in consecutive chunks of ``chunk_rows`` rows (the last may be short).

        A ``for X, y in chunks(...)`` loop still holds the chunk it is done with while
        the next one is read: two chunks at the peak.
        """
        check_row_range(start, stop, self.rows)
        check_positive_int("chunk_rows", chunk_rows)
        return (self.read(at, min(at + chunk_rows, stop)) for at in range(start, stop, chunk_rows))

    def rows_per_chunk(self, chunk_bytes: int) -> int:
        """How many rows one read of about ``chunk_bytes`` bytes of memory holds (at least 1).

        A row costs the bytes read from the file for it (for CSV, also its parsed
        cells), the X and y values made from it, and the temporaries of the column
        being converted. Measured: streaming a 40 MB ``.npy`` in chunks of 1 MB
        raised the peak resident memory by 2.4 MB (two chunks and the caller's sum).
        """
        check_positive_int("chunk_bytes", chunk_bytes)
        made = (len(self.features) + len(self.target)) * self.dtype.itemsize + _COLUMN_TEMPORARY_BYTES
        per_row = max(shard.bytes_per_row() for shard in self._shards) + made
        return max(1, int(chunk_bytes // per_row))


def open_rows(path: Any, target: Union[str, Sequence[str]], features: Union[None, str, Sequence[str]] = None, *,
              dtype: torch.dtype = torch.float32) -> RowFile:
    """Open a data file (``.npy``, CSV/TSV) or a directory of shards to read by row ranges; see :class:`RowFile`."""
    return RowFile(path, target, features, dtype=dtype)
