"""Data files read by row ranges and in chunks, so memory holds one chunk, never the whole file.

A :class:`RowFile` reads the formats :func:`pyfit.load_data` reads, with its checks
and messages, except ``.npz`` (a zip archive cannot be read by row ranges): a ``.npy``
2-D array, a CSV/TSV file with a header, or a directory of shards, every ``.npy`` or
every CSV/TSV file in it, taken in name order as one table. An error about a cell
names the shard and the row as :mod:`pyfit.data` numbers it in that shard. The
files themselves are read by ``pyfit._shard_files``.
"""

from __future__ import annotations

import bisect
import itertools
import os
from typing import Any, Iterator, List, Sequence, Tuple, Union

import torch
from torch import Tensor

from . import data
from ._shard_files import NpyReader, Reading, open_shards
from .validation import check_dtype, check_positive_int, check_row_range

# a column checked on its own (every CSV column; an array's only when its block fails the
# whole-block check) passes through float64 arrays of one value per row: the values, their
# magnitudes for the range check and the finite test's mask
_COLUMN_TEMPORARY_BYTES = 17


def _column_runs(columns: Sequence[int]) -> List[Tuple[int, int]]:
    """Column positions as (first, count) runs of consecutive ones: [0, 1, 2, 5] -> [(0, 3), (5, 1)]."""
    runs: List[Tuple[int, int]] = []
    for column in columns:
        if runs and runs[-1][0] + runs[-1][1] == column:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((column, 1))
    return runs


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
        self._shards = open_shards(self.path)
        self.names: List[str] = self._shards[0].names
        self.features, self.target = data.choose_columns(self.path, self.names, target, features)
        self.dtype: torch.dtype = dtype
        self._firsts = list(itertools.accumulate((shard.rows for shard in self._shards), initial=0))
        self.rows: int = self._firsts[-1]
        # where the chosen columns lie in a row of an array, as runs of neighbouring columns copied at once
        self._feature_runs = _column_runs([self.names.index(name) for name in self.features])
        self._target_runs = _column_runs([self.names.index(name) for name in self.target])

    def __repr__(self) -> str:
        return (f"RowFile({self.path!r}, rows={self.rows}, features={self.features}, target={self.target}, "
                f"dtype={self.dtype})")

    def read(self, start: int, stop: int) -> Tuple[Tensor, Tensor]:
        """Rows ``[start, stop)`` (0-based, over all shards) as X (n, D) and y (n, K), new tensors of ``dtype``."""
        check_row_range(start, stop, self.rows)
        reading = Reading(self._shards)
        try:
            return self._read(start, stop, reading)
        finally:
            reading.close()

    def chunks(self, start: int, stop: int, chunk_rows: int) -> Iterator[Tuple[Tensor, Tensor]]:
        """:meth:`read` over ``[start, stop)`` in consecutive chunks of ``chunk_rows`` rows (the last may be short).

        The file is read once, front to back, over the whole loop. A ``for X, y in
        chunks(...)`` loop still holds the chunk it is done with while the next one is
        read: two chunks at the peak.
        """
        check_row_range(start, stop, self.rows)
        check_positive_int("chunk_rows", chunk_rows)
        return self._chunks(start, stop, chunk_rows)

    def _chunks(self, start: int, stop: int, chunk_rows: int) -> Iterator[Tuple[Tensor, Tensor]]:
        reading = Reading(self._shards)
        try:
            for at in range(start, stop, chunk_rows):
                yield self._read(at, min(at + chunk_rows, stop), reading)
        finally:  # also when the loop stops early and the generator is closed
            reading.close()

    def pieces(self, start: int, stop: int, chunk_rows: int) -> Iterator[Tuple[Tensor, Tensor]]:
        """Rows ``[start, stop)`` as consecutive (X, y) pieces, the fast way to pass over them once.

        Where a ``.npy`` shard stores ``dtype`` and the features are neighbouring
        columns, and so are the targets, a piece is X and y as views of one reused
        buffer of a few megabytes of rows, valid only until the next piece is asked
        for: nothing is copied, and each piece is checked whole. Elsewhere, and for a
        piece that fails that check (then its cells are checked as :meth:`read` checks
        them, and a bad one is named), a piece is new tensors. A piece holds at most
        ``chunk_rows`` rows.
        """
        check_row_range(start, stop, self.rows)
        check_positive_int("chunk_rows", chunk_rows)
        return self._pieces(start, stop, chunk_rows)

    def _pieces(self, start: int, stop: int, chunk_rows: int) -> Iterator[Tuple[Tensor, Tensor]]:
        viewed = len(self._feature_runs) == 1 and len(self._target_runs) == 1
        (x_first, x_count), (y_first, y_count) = (self._feature_runs[0], self._target_runs[0]) if viewed \
            else ((0, 0), (0, 0))
        reading = Reading(self._shards)
        try:
            at = start
            while at < stop:  # the range, shard by shard
                shard_index = bisect.bisect_right(self._firsts, at) - 1
                shard, first = self._shards[shard_index], self._firsts[shard_index]
                until = min(stop, first + shard.rows)
                reader = reading.reader(shard_index)
                if viewed and isinstance(reader, NpyReader) and shard.stores(self.dtype):
                    for begin, block, whole in reader.pieces(at - first, until - first, chunk_rows):
                        if whole:
                            yield (torch.from_numpy(block[:, x_first:x_first + x_count]),
                                   torch.from_numpy(block[:, y_first:y_first + y_count]))
                        else:
                            yield self._read(first + begin, first + begin + len(block), reading)
                else:
                    for part in range(at, until, chunk_rows):
                        yield self._read(part, min(part + chunk_rows, until), reading)
                at = until
        finally:  # also when the loop stops early and the generator is closed
            reading.close()

    def _read(self, start: int, stop: int, reading: Reading) -> Tuple[Tensor, Tensor]:
        count = stop - start
        X = torch.empty((count, len(self.features)), dtype=self.dtype)
        y = torch.empty((count, len(self.target)), dtype=self.dtype)
        shard_index = bisect.bisect_right(self._firsts, start) - 1
        at = start
        while at < stop:  # the range, shard by shard
            shard, first = self._shards[shard_index], self._firsts[shard_index]
            until = min(stop, first + shard.rows)
            reader = reading.reader(shard_index)
            X_part, y_part = X[at - start:until - start], y[at - start:until - start]
            runs = (self._feature_runs, self._target_runs)
            if not isinstance(reader, NpyReader) or not reader.fill(X_part, y_part, at - first, until - first, runs):
                # the rows' columns checked one by one: all of a CSV's, an array's only where its fast check
                # failed, which then names the first bad cell as load_data would (or finds none)
                table = reader.table(at - first, until - first)
                _fill(X_part, table, self.features, "feature column")
                _fill(y_part, table, self.target, "target column")
            at, shard_index = until, shard_index + 1
        return X, y

    def rows_per_chunk(self, chunk_bytes: int) -> int:
        """How many rows one read of about ``chunk_bytes`` bytes of memory holds (at least 1).

        A row costs the bytes read from the file for it (for CSV, also its parsed
        cells), the X and y values made from it, and the temporaries of the column
        being converted. Measured: streaming a 40 MB ``.npy`` in chunks of 1 MB
        raised the peak resident memory by 2.4 to 2.9 MB (two chunks and the caller's
        sum), and a streamed fit of it by 1.7 to 4.6 MB.
        """
        check_positive_int("chunk_bytes", chunk_bytes)
        made = (len(self.features) + len(self.target)) * self.dtype.itemsize + _COLUMN_TEMPORARY_BYTES
        per_row = max(shard.bytes_per_row() for shard in self._shards) + made
        return max(1, int(chunk_bytes // per_row))


def open_rows(path: Any, target: Union[str, Sequence[str]], features: Union[None, str, Sequence[str]] = None, *,
              dtype: torch.dtype = torch.float32) -> RowFile:
    """Open a data file (``.npy``, CSV/TSV) or a directory of shards to read by row ranges; see :class:`RowFile`."""
    return RowFile(path, target, features, dtype=dtype)
