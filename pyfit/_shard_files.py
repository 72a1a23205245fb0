"""The files behind a :class:`pyfit.RowFile`, as stored: a ``.npy`` array or a CSV/TSV file, or a directory
of them (its shards), each read by row ranges through a reader that holds the file open for a pass.

A reader gives a range's rows as a :class:`pyfit.data.Table`, whose column-by-column
checks name a bad cell as :func:`pyfit.load_data` does; a ``.npy`` reader also copies
a range's columns straight into X and y and checks them whole, the fast way when no
cell is bad.
"""

from __future__ import annotations

import itertools
import os
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from . import data
from .errors import DataError

# a CSV shard remembers where every SEEK_EVERY-th data row starts, so a read seeks
# near its first row and parses at most this many rows it does not keep
SEEK_EVERY = 4096

# what a parsed CSV row costs beyond its text, measured with sys.getsizeof: the list
# of cells (56 bytes + 8 per cell), a str object per cell (49 bytes + its characters),
# and the row's (cells, line) pair with the line number (~100 bytes)
_CSV_ROW_OVERHEAD = 156
_CSV_CELL_OVERHEAD = 57

# a .npy range is read a piece of at most this many bytes at a time into one buffer, where its
# columns are copied out and checked while it is still in the processor's cache: the bytes cross
# main memory once, from the file into X and y (measured in a streamed fit of a 200 MB file, whose
# sums flush the caches between chunks: a pass read in 77-123 ms, against 146-169 ms in blocks
# of a whole 8 MB chunk)
PIECE_BYTES = 2**20
# a .npy range passed over as views of its rows (NpyReader.pieces) is read up to this many bytes at a
# time: each piece also costs a call of the sums, so larger pieces than PIECE_BYTES pay (measured in a
# streamed fit of a 200 MB file, profiled: 60 ms an epoch in pieces of 1 MB, 45 ms in pieces of 4 MB)
VIEW_PIECE_BYTES = 4 * 2**20

SHARD_SUFFIXES = (".npy", ".csv", ".tsv", ".tab")


def _stamp(path: str, descriptor: Optional[int] = None) -> Tuple[int, int]:
    """The file's size and modification time, to notice a file changed under an open RowFile."""
    status = os.fstat(descriptor) if descriptor is not None else os.stat(path)
    return status.st_size, status.st_mtime_ns


def _check_unchanged(path: str, stamp: Tuple[int, int], descriptor: int) -> None:
    if _stamp(path, descriptor) != stamp:
        raise DataError(f"{path} changed since it was opened (its size or modification time differ); "
                        "open it again")


class NpyShard:
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

    def stores(self, dtype: torch.dtype) -> bool:
        """Whether the array holds values of this torch dtype as they are in memory (and so can be viewed)."""
        return self._dtype == torch.empty(0, dtype=dtype).numpy().dtype

    def bytes_per_row(self) -> float:
        # a block of integers (or bools) is converted to float64 whole on its way to X and y
        converted = 0 if casts_as_float64_would(self._dtype) else len(self.names) * 8
        return self._row_bytes + converted

    def reader(self) -> "NpyReader":
        return NpyReader(self)


class NpyReader:
    """A ``.npy`` shard held open while a range or a pass of chunks is read from it."""

    def __init__(self, shard: NpyShard):
        self._shard = shard
        self._handle = open(shard.path, "rb", buffering=0)  # unbuffered: the bytes land where they are read into
        self._piece = np.empty((0, len(shard.names)), dtype=shard._dtype)  # made as large as the reads need

    def _read_into(self, block: np.ndarray, start: int) -> np.ndarray:
        shard = self._shard
        target = memoryview(block.reshape(-1).view(np.uint8))
        _check_unchanged(shard.path, shard._stamp, self._handle.fileno())
        self._handle.seek(shard._offset + start * shard._row_bytes)
        filled = 0
        while filled < len(target):
            count = self._handle.readinto(target[filled:])
            if not count:
                raise DataError(f"{shard.path} ended before row {start + filled // shard._row_bytes + 1}")
            filled += count
        return block

    def pieces(self, start: int, stop: int, most_rows: int) -> Iterator[Tuple[int, np.ndarray, bool]]:
        """Rows ``[start, stop)`` read a piece of at most ``most_rows`` rows at a time into one reused buffer, as
        (first row, block, whether every value of the block is strictly inside its dtype's range); each block
        is overwritten by the next."""
        step = self._grow_piece(min(stop - start, most_rows), VIEW_PIECE_BYTES)
        limit = np.finfo(self._piece.dtype).max
        for at in range(start, stop, step):
            block = self._read_into(self._piece[:min(stop, at + step) - at], at)
            # one pass over whole contiguous rows: cheaper than over the chosen columns' strided views
            values = block.reshape(-1)
            yield at, block, not values.size or bool(-limit < values.min() and values.max() < limit)

    def _grow_piece(self, rows: int, piece_bytes: int) -> int:
        """The rows of one piece of a read of ``rows`` rows: about ``piece_bytes``, no more than those rows."""
        step = max(1, min(piece_bytes // self._shard._row_bytes, rows))
        if len(self._piece) < step:
            self._piece = np.empty((step, self._piece.shape[1]), dtype=self._piece.dtype)
        return step

    def table(self, start: int, stop: int) -> data.Table:
        shard = self._shard
        block = self._read_into(np.empty((stop - start, len(shard.names)), dtype=shard._dtype), start)
        return data.Table(shard.path, shard.names, block, range(start + 1, stop + 1))

    def fill(self, X: Tensor, y: Tensor, start: int, stop: int, runs: Tuple[List[Tuple[int, int]], ...]) -> bool:
        """Rows ``[start, stop)`` into X and y (their columns at ``runs``), a piece at a time; False, with X and y
        part written, where a piece fails the whole-block check (see ``copy_checked``)."""
        step = self._grow_piece(stop - start, PIECE_BYTES)
        X_values, y_values = X.numpy(), y.numpy()
        for at in range(start, stop, step):
            until = min(stop, at + step)
            block = self._read_into(self._piece[:until - at], at)
            if not casts_as_float64_would(block.dtype):
                block = block.astype(np.float64)
            rows = slice(at - start, until - start)
            if not (copy_checked(X_values[rows], block, runs[0]) and copy_checked(y_values[rows], block, runs[1])):
                return False
        return True

    def close(self) -> None:
        self._handle.close()


class CsvShard:
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

    def reader(self) -> "CsvReader":
        return CsvReader(self)


class CsvReader:
    """A CSV shard held open while a range or a pass of chunks is read from it: a read that starts where the
    last one ended goes on parsing from there, any other seeks to the mark before its first row."""

    def __init__(self, shard: CsvShard):
        self._shard = shard
        self._handle = data.open_text(shard.path)
        self._rows: Optional[Iterator[Tuple[List[str], int]]] = None  # parsing from row self._next on
        self._next = -1

    def _seek(self, start: int) -> None:
        shard = self._shard
        mark = start // SEEK_EVERY
        position, line = shard._marks[mark]
        self._handle.seek(position)
        records = data.csv_records(shard.path, iter(self._handle.readline, ""), first_line=line)
        self._rows = data.csv_rows(shard.path, records, shard.names)
        self._next = mark * SEEK_EVERY

    def table(self, start: int, stop: int) -> data.Table:
        shard = self._shard
        _check_unchanged(shard.path, shard._stamp, self._handle.fileno())
        if self._rows is None or not self._next <= start or start // SEEK_EVERY * SEEK_EVERY > self._next:
            self._seek(start)  # behind, or a mark is nearer than where the parsing stands
        skip, count = start - self._next, stop - start
        picked = list(itertools.islice(self._rows, skip, skip + count))
        self._next = stop
        if len(picked) != count:
            self._rows = None
            raise DataError(f"{shard.path} has fewer rows than when it was opened; open it again")
        return data.Table(shard.path, shard.names, [row for row, _ in picked], [line for _, line in picked])

    def close(self) -> None:
        self._handle.close()


def _open_shard(path: str) -> Union[NpyShard, CsvShard]:
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".npz":
        raise DataError(f"{path}: a .npz archive cannot be read by row ranges; save its array with numpy.save as "
                        ".npy, or read it whole with pyfit.load_data")
    return NpyShard(path) if suffix == ".npy" else CsvShard(path)


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


def open_shards(path: str) -> List[Union[NpyShard, CsvShard]]:
    if not os.path.isdir(path):
        return [_open_shard(data.check_file(path))]
    shards = [_open_shard(data.check_file(shard)) for shard in _shard_paths(path)]
    for shard in shards[1:]:
        if shard.names != shards[0].names:
            raise DataError(f"{shard.path}: its columns ({', '.join(shard.names)}) differ from those of "
                            f"{shards[0].path} ({', '.join(shards[0].names)}); the shards of {path} need the "
                            "same columns")
    return shards


def casts_as_float64_would(dtype: np.dtype) -> bool:
    """Whether this dtype cast straight to float32 gives what it gives cast to float64 first, as load_data
    reads it: floats do; a 64-bit integer would be rounded once where load_data rounds it twice."""
    return np.issubdtype(dtype, np.floating) and dtype.itemsize <= 8


def copy_checked(out: np.ndarray, block: np.ndarray, runs: List[Tuple[int, int]]) -> bool:
    """Copy the block's columns at ``runs`` into ``out`` (cast to out's dtype), and say whether every value is
    strictly inside out's dtype's range: False for a NaN, an infinity, a value too large for it or one at its
    very limit, all cells the column-by-column check of ``data.Table.column`` then judges and names."""
    # numpy's copies and reductions, single-threaded: a thread of torch's kept waiting on a busy machine
    # would hold up the whole copy
    at = 0
    with np.errstate(over="ignore"):  # a value too large for out's dtype becomes inf, which the check finds
        for first, count in runs:
            np.copyto(out[:, at:at + count], block[:, first:first + count], casting="same_kind")
            at += count
    limit = np.finfo(out.dtype).max
    return not out.size or bool(-limit < out.min() and out.max() < limit)


class Reading:
    """The one shard held open while a range or a pass of chunks is read, opened as the rows reach it."""

    def __init__(self, shards: Sequence[Union[NpyShard, CsvShard]]):
        self._shards = shards
        self._index: Optional[int] = None
        self._reader: Union[None, NpyReader, CsvReader] = None

    def reader(self, index: int) -> Union[NpyReader, CsvReader]:
        if index != self._index:
            self.close()
            self._reader, self._index = self._shards[index].reader(), index
        return self._reader

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        self._reader = self._index = None
