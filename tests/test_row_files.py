"""pyfit.row_files: row ranges of .npy, CSV/TSV files and directories of shards equal load_data's rows."""

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import pyfit
from pyfit import _shard_files, row_files
from pyfit.row_files import open_rows

COLUMNS = ["a", "b", "c", "d"]


def _write_text(path, values, delimiter=",", names=COLUMNS, blank_every=0):
    """A CSV/TSV file of the values as a spreadsheet might write it: a BOM, a CRLF header, blank lines now and then."""
    with open(path, "w", encoding="utf-8-sig", newline="") as handle:
        handle.write(delimiter.join(names) + "\r\n")
        for i, row in enumerate(values):
            handle.write(delimiter.join(repr(float(value)) for value in row) + "\n")
            if blank_every and i % blank_every == blank_every - 1:
                handle.write("\n")
    return str(path)


def _write(tmp_path, kind, values, name="data"):
    if kind == "npy":
        path = str(tmp_path / f"{name}.npy")
        np.save(path, values)
        return path
    suffix, delimiter = (".tsv", "\t") if kind == "tsv" else (".csv", ",")
    return _write_text(tmp_path / f"{name}{suffix}", values, delimiter, blank_every=3)


def _expected(paths, target, features, dtype):
    """The rows load_data reads from each file, one after another, as the tensors RowFile gives."""
    datasets = [pyfit.load_data(path, target, features, dtype=dtype) for path in paths]
    X = np.concatenate([data.X for data in datasets])
    y = np.concatenate([data.y.reshape(len(data.X), -1) for data in datasets])
    return torch.from_numpy(X).to(dtype), torch.from_numpy(y).to(dtype)


def _random_ranges(rng, rows, count=12):
    ranges = [(0, rows), (0, 1), (rows - 1, rows), (rows // 2, rows // 2)]
    for _ in range(count):
        start = int(rng.integers(0, rows + 1))
        ranges.append((start, int(rng.integers(start, rows + 1))))
    return ranges


def _check_reads(rows, expected_X, expected_y, rng):
    for start, stop in _random_ranges(rng, rows.rows):
        X, y = rows.read(start, stop)
        assert X.dtype == y.dtype == rows.dtype and X.is_contiguous() and y.is_contiguous()
        assert torch.equal(X, expected_X[start:stop]), (start, stop)
        assert torch.equal(y, expected_y[start:stop]), (start, stop)
        # a pass of chunks reads on from where the last chunk ended, across marks and shards
        size = int(rng.integers(1, 9))
        chunks = list(rows.chunks(start, stop, size))
        assert torch.equal(torch.cat([X for X, _ in chunks] or [X]), X), (start, stop, size)
        assert torch.equal(torch.cat([y for _, y in chunks] or [y]), y), (start, stop, size)
        # and so does a pass of pieces (each copied: a view is valid only until the next piece)
        pieces = [(X.clone(), y.clone()) for X, y in rows.pieces(start, stop, size)]
        assert torch.equal(torch.cat([X for X, _ in pieces] or [X]), X), (start, stop, size)
        assert torch.equal(torch.cat([y for _, y in pieces] or [y]), y), (start, stop, size)


@pytest.fixture
def few_rows_per_mark(monkeypatch):
    """CSV reads seek to a mark every few rows, so small files cross many marks."""
    monkeypatch.setattr(_shard_files, "SEEK_EVERY", 5)


@pytest.mark.parametrize("kind", ["npy", "csv", "tsv"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_read_of_random_ranges_equals_load_data(tmp_path, kind, dtype, few_rows_per_mark):
    rng = np.random.default_rng([len(kind), dtype.itemsize])
    values = rng.normal(size=(53, 4)) * 10.0 ** rng.integers(-3, 4, size=(53, 4))
    path = _write(tmp_path, kind, values)
    names = pyfit.data.read_table(path).names
    for target, features in ((names[3], None), (f"{names[0]},{names[2]}", [names[3], names[1]])):
        rows = open_rows(path, target, features, dtype=dtype)
        assert rows.rows == 53 and rows.names == names and rows.dtype == dtype
        expected_X, expected_y = _expected([path], target, features, dtype)
        data = pyfit.load_data(path, target, features)
        assert rows.features == data.features and rows.target == data.target
        _check_reads(rows, expected_X, expected_y, rng)


@pytest.mark.parametrize("kind", ["npy", "csv"])
def test_a_directory_of_shards_reads_as_its_files_one_after_another(tmp_path, kind, few_rows_per_mark):
    rng = np.random.default_rng(len(kind))
    shards = tmp_path / "shards"
    shards.mkdir()
    paths = [_write(shards, kind, rng.normal(size=(count, 4)), name=f"part-{k:02d}")
             for k, count in enumerate([7, 1, 12, 5])]
    (shards / "README.md").write_text("ignored: not a data file\n")
    target = "d" if kind == "csv" else "3"
    rows = open_rows(shards, target, dtype=torch.float64)
    assert rows.rows == 25 and rows.path == str(shards)
    expected_X, expected_y = _expected(sorted(paths), target, None, torch.float64)
    _check_reads(rows, expected_X, expected_y, rng)


def test_chunks_cover_the_range_exactly(tmp_path):
    rng = np.random.default_rng(7)
    path = _write(tmp_path, "npy", rng.normal(size=(40, 3)))
    rows = open_rows(path, "2", dtype=torch.float64)
    for start, stop, size in [(0, 40, 7), (3, 38, 5), (10, 11, 4), (0, 40, 40), (5, 9, 100)]:
        chunks = list(rows.chunks(start, stop, size))
        assert [len(X) for X, _ in chunks] == [min(size, stop - at) for at in range(start, stop, size)]
        X, y = rows.read(start, stop)
        assert torch.equal(torch.cat([X for X, _ in chunks]), X)
        assert torch.equal(torch.cat([y for _, y in chunks]), y)
    assert list(rows.chunks(12, 12, 3)) == []


@pytest.mark.parametrize("stored", [np.int64, np.int32, np.uint8, np.bool_, np.float16, ">f8", "<f4", ">f4"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_arrays_of_every_numeric_dtype_read_as_load_data_reads_them(tmp_path, stored, dtype):
    rng = np.random.default_rng(11)
    values = rng.normal(size=(40, 3)) * 1000
    if np.dtype(stored).kind in "iub":
        values = rng.integers(0, 2 if stored == np.bool_ else 100, size=(40, 3))
        if stored == np.int64:
            values[3, 0] = 2**53 + 2**29 + 1  # float32 of its float64 (load_data's) is not its nearest float32
    path = str(tmp_path / "stored.npy")
    np.save(path, values.astype(stored))
    rows = open_rows(path, "0", dtype=dtype)
    expected_X, expected_y = _expected([path], "0", None, dtype)
    _check_reads(rows, expected_X, expected_y, rng)


def test_only_the_chosen_columns_are_checked(tmp_path):
    values = np.ones((6, 4))
    values[2, 1] = np.nan  # in a column neither a feature nor the target
    path = _write(tmp_path, "npy", values)
    X, y = open_rows(path, "3", "0,2").read(0, 6)
    assert torch.equal(X, torch.ones(6, 2)) and torch.equal(y, torch.ones(6, 1))


def test_values_at_the_edge_of_float32_are_judged_as_load_data_judges_them(tmp_path):
    largest = float(np.finfo(np.float32).max)
    above = np.nextafter(largest, np.inf)  # in float64, above float32's largest, yet rounds to it
    path = _write(tmp_path, "npy", np.array([[1.0, 2.0], [largest, -largest], [3.0, 4.0]]))
    X, y = open_rows(path, "1", dtype=torch.float32).read(0, 3)
    assert X[1, 0] == largest and y[1, 0] == -largest
    path = _write(tmp_path, "npy", np.array([[1.0, 2.0], [3.0, -above]]), name="above")
    with pytest.raises(pyfit.DataError, match=re.escape(f"above.npy: value {-above} at row 2, column '1' is too "
                                                       "large for float32")):
        open_rows(path, "1", dtype=torch.float32).read(0, 2)
    assert open_rows(path, "1", dtype=torch.float64).read(0, 2)[1][1, 0] == -above


@pytest.mark.parametrize("piece_bytes", [16, 2**20])
def test_the_first_bad_cell_is_named_in_column_order_whatever_piece_it_is_read_in(tmp_path, monkeypatch,
                                                                                   piece_bytes):
    monkeypatch.setattr(_shard_files, "PIECE_BYTES", piece_bytes)  # 16: a piece a row
    values = np.ones((12, 3))
    values[4, 2] = np.nan  # the target, read first
    values[8, 1] = np.inf  # a feature: features are checked before the target, as load_data checks them
    path = _write(tmp_path, "npy", values)
    rows = open_rows(path, "2")
    with pytest.raises(pyfit.DataError, match=r"non-finite value inf at row 9, column '1'"):
        rows.read(0, 12)
    with pytest.raises(pyfit.DataError, match=r"missing value \(NaN\) at row 5, column '2'"):
        list(rows.chunks(0, 8, 3))
    largest = float(np.finfo(np.float32).max)
    values[4, 2], values[8, 1] = largest, -largest  # at the limit, yet allowed: the rows after are read too
    values[10, 0] = 7.0
    X, y = open_rows(_write(tmp_path, "npy", values, name="edge"), "2").read(0, 12)
    assert X[8, 1] == -largest and y[4, 0] == largest and X[10, 0] == 7.0 and X[11, 0] == 1.0


def _pieces(rows, start, stop, chunk_rows=100):
    """A pass of pieces: each one's X and y copied, whether they were views of the file's rows (a row stride
    of all its columns), and where the memory they lie in starts."""
    width = len(rows.names)
    return [(X.clone(), y.clone(), X.stride(0) == y.stride(0) == width, X.untyped_storage().data_ptr())
            for X, y in rows.pieces(start, stop, chunk_rows)]


def _assert_pieces_cover(rows, pieces, start, stop):
    X, y = rows.read(start, stop)
    assert torch.equal(torch.cat([piece[0] for piece in pieces]), X)
    assert torch.equal(torch.cat([piece[1] for piece in pieces]), y)


@pytest.mark.parametrize("target, features", [("3", None), ("0", None), ("3", "1,2")])
def test_pieces_are_views_of_one_buffer_where_the_columns_are_two_runs_of_the_fits_dtype(
        tmp_path, monkeypatch, target, features):
    monkeypatch.setattr(_shard_files, "VIEW_PIECE_BYTES", 5 * 4 * 4)  # five float32 rows of 4 columns
    values = np.random.default_rng(5).normal(size=(23, 4)).astype(np.float32)
    rows = open_rows(_write(tmp_path, "npy", values), target, features)
    pieces = _pieces(rows, 2, 23)
    assert [len(piece[0]) for piece in pieces] == [5, 5, 5, 5, 1]
    assert all(piece[2] for piece in pieces) and len({piece[3] for piece in pieces}) == 1
    _assert_pieces_cover(rows, pieces, 2, 23)
    pieces = _pieces(rows, 2, 23, chunk_rows=3)  # no piece longer than a chunk: memory stays in its budget
    assert [len(piece[0]) for piece in pieces] == [3] * 7 and all(piece[2] for piece in pieces)
    _assert_pieces_cover(rows, pieces, 2, 23)
    # a directory of shards: pieces within each shard, views all the same
    shards = tmp_path / "shards"
    shards.mkdir()
    np.save(shards / "a.npy", values[:7])
    np.save(shards / "b.npy", values[7:])
    rows = open_rows(shards, target, features)
    pieces = _pieces(rows, 3, 23)
    assert [len(piece[0]) for piece in pieces] == [4, 5, 5, 5, 1] and all(piece[2] for piece in pieces)
    _assert_pieces_cover(rows, pieces, 3, 23)


@pytest.mark.parametrize("case", ["scattered features", "another dtype", "csv"])
def test_pieces_are_new_tensors_of_chunk_rows_where_views_cannot_be(tmp_path, monkeypatch, case):
    monkeypatch.setattr(_shard_files, "VIEW_PIECE_BYTES", 5 * 4 * 4)
    values = np.random.default_rng(6).normal(size=(11, 4))
    stored, features = {"scattered features": (np.float32, "2,0"), "another dtype": (np.float64, None),
                        "csv": (np.float32, None)}[case]
    path = _write(tmp_path, "csv" if case == "csv" else "npy", values.astype(stored))
    rows = open_rows(path, "d" if case == "csv" else "3", features)
    pieces = _pieces(rows, 0, 11, chunk_rows=4)
    assert [len(piece[0]) for piece in pieces] == [4, 4, 3] and not any(piece[2] for piece in pieces)
    _assert_pieces_cover(rows, pieces, 0, 11)


def test_a_piece_with_a_bad_value_is_checked_cell_by_cell(tmp_path, monkeypatch):
    monkeypatch.setattr(_shard_files, "VIEW_PIECE_BYTES", 5 * 4 * 4)
    values = np.random.default_rng(7).normal(size=(15, 4)).astype(np.float32)
    values[6, 0] = np.nan  # not a chosen column: its piece fails the whole-piece check, yet reads
    rows = open_rows(_write(tmp_path, "npy", values), "3", "1,2")
    pieces = _pieces(rows, 0, 15)
    assert [piece[2] for piece in pieces] == [True, False, True]
    _assert_pieces_cover(rows, pieces, 0, 15)
    values[12, 3] = np.inf  # the target: named as read() names it
    rows = open_rows(_write(tmp_path, "npy", values, name="bad"), "3", "1,2")
    with pytest.raises(pyfit.DataError, match=r"bad\.npy: non-finite value inf at row 13, column '3'"):
        _pieces(rows, 0, 15)
    with pytest.raises(pyfit.InputError, match="chunk_rows must be an integer >= 1, got 0"):
        rows.pieces(0, 15, 0)


def test_a_streamed_fit_names_a_bad_cell_it_reads_in_a_piece(tmp_path, monkeypatch):
    monkeypatch.setattr(_shard_files, "VIEW_PIECE_BYTES", 64 * 4 * 4)
    values = np.random.default_rng(8).normal(size=(2000, 4)).astype(np.float32)
    path = _write(tmp_path, "npy", values)
    settings = dict(lr=0.1, epochs=3, tol=None, seed=0)
    streamed = pyfit.fit("linear", open_rows(path, "3"), None, chunk_mb=0.01, **settings)
    held = pyfit.fit("linear", open_rows(path, "3"), None, **settings)
    assert streamed.backend == "cpp:summed-linear" and held.backend != streamed.backend
    torch.testing.assert_close(streamed.model.weight, held.model.weight, rtol=1e-5, atol=1e-6)
    values[1500, 2] = np.nan
    with pytest.raises(pyfit.DataError, match=r"missing value \(NaN\) at row 1501, column '2'"):
        pyfit.fit("linear", open_rows(_write(tmp_path, "npy", values, name="bad"), "3"), None, chunk_mb=0.01,
                  **settings)


def _open_files():
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("kind", ["npy", "csv"])
def test_a_pass_of_chunks_holds_one_file_open_and_closes_it(tmp_path, kind):
    shards = tmp_path / "shards"
    shards.mkdir()
    for k in range(3):
        _write(shards, kind, np.ones((10, 4)), name=f"part{k}")
    rows = open_rows(shards, "d" if kind == "csv" else "3")
    opened = _open_files()
    chunks = rows.chunks(0, 30, 4)
    for _ in range(5):  # into the second shard
        next(chunks)
        assert _open_files() == opened + 1
    chunks.close()  # a loop that stops early
    assert _open_files() == opened
    assert len(list(rows.chunks(0, 30, 7))) == 5 and _open_files() == opened
    rows.read(5, 25)
    assert _open_files() == opened


def test_each_read_is_new_memory(tmp_path):
    path = _write(tmp_path, "npy", np.ones((6, 2)))
    rows = open_rows(path, "1")
    first, _ = rows.read(0, 3)
    first.add_(1.0)
    second, _ = rows.read(0, 3)
    assert torch.equal(second, torch.ones(3, 1))


def test_rows_per_chunk_counts_the_file_bytes_and_the_tensors(tmp_path):
    path = _write(tmp_path, "npy", np.zeros((10, 8)))  # 64 file bytes a row
    rows = open_rows(path, "7", dtype=torch.float32)  # 8 values made of each, 4 bytes each
    per_row = 64 + 8 * 4 + row_files._COLUMN_TEMPORARY_BYTES
    assert rows.rows_per_chunk(1000 * per_row) == 1000
    assert rows.rows_per_chunk(1) == 1
    csv = open_rows(_write(tmp_path, "csv", np.zeros((10, 4))), "d")
    assert csv.rows_per_chunk(1 << 20) < (1 << 20) // os.path.getsize(csv.path) * 10  # more than the text alone


def _refusal(match, *args, **kwargs):
    with pytest.raises(pyfit.DataError, match=match):
        open_rows(*args, **kwargs)


def test_unknown_and_misused_columns_are_refused_at_open(tmp_path):
    path = _write(tmp_path, "csv", np.zeros((3, 4)))
    _refusal(r"data\.csv: unknown target column 'price'; available columns: a, b, c, d", path, "price")
    _refusal(r"unknown feature column 'z'", path, "d", "a,z")
    _refusal(r"column 'd' is both a feature and a target", path, "d", "a,d")
    _refusal(r"\.npy: unknown target column '9'; available columns: 0, 1",
             _write(tmp_path, "npy", np.zeros((3, 2))), "9")


def test_bad_cells_name_the_file_row_and_column(tmp_path, few_rows_per_mark):
    lines = ["a,b", "1,2", "", "3,4", "5,6", "7,8", "9,10", "11,12", "13,"]  # the empty cell: line 9
    path = tmp_path / "gap.csv"
    path.write_text("\n".join(lines) + "\n14,15\n")
    rows = open_rows(path, "b")
    assert torch.equal(rows.read(0, 6)[1][:, 0], torch.tensor([2.0, 4, 6, 8, 10, 12]))
    with pytest.raises(pyfit.DataError, match=r"gap\.csv: missing value at row 9, column 'b'"):
        rows.read(4, 8)
    npy = str(tmp_path / "nan.npy")
    np.save(npy, np.array([[1.0, 2.0], [3.0, 4.0], [np.nan, 5.0]]))
    with pytest.raises(pyfit.DataError, match=r"nan\.npy: missing value \(NaN\) at row 3, column '0'"):
        open_rows(npy, "1").read(1, 3)
    assert open_rows(npy, "1").read(0, 2)[0].tolist() == [[1.0], [3.0]]  # rows that are fine still read
    large = str(tmp_path / "large.npy")
    np.save(large, np.array([[1.0, 2.0], [1e39, 5.0]]))
    with pytest.raises(pyfit.DataError, match=r"large\.npy: value 1e\+39 at row 2, column '0' is too large "
                                              r"for float32"):
        open_rows(large, "1", dtype=torch.float32).read(0, 2)
    assert open_rows(large, "1", dtype=torch.float64).read(0, 2)[0][1, 0] == 1e39


def test_a_bad_cell_in_a_shard_names_that_shard_and_its_row(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    np.save(shards / "0.npy", np.ones((4, 2)))
    np.save(shards / "1.npy", np.array([[1.0, 1.0], [np.inf, 1.0]]))
    rows = open_rows(shards, "1")
    with pytest.raises(pyfit.DataError, match=r"shards.1\.npy: non-finite value inf at row 2, column '0'"):
        rows.read(2, 6)


def test_shards_of_mixed_formats_or_different_columns_are_refused(tmp_path):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    np.save(mixed / "a.npy", np.ones((2, 2)))
    _write_text(mixed / "b.csv", np.ones((2, 4)))
    _refusal(r"mixed mixes \.npy files \(a\.npy, \.\.\.\) with CSV/TSV files \(b\.csv, \.\.\.\); a directory "
             "of shards holds one format", mixed, "1")
    differ = tmp_path / "differ"
    differ.mkdir()
    for name in ("a.csv", "b.csv"):
        _write_text(differ / name, np.ones((2, 4)))
    _write_text(differ / "c.csv", np.ones((2, 4)), names=["a", "b", "c", "e"])
    _write_text(differ / "d.csv", np.ones((2, 3)), names=["a", "b", "c"])
    _refusal(r"differ.c\.csv: its columns \(a, b, c, e\) differ from those of .*differ.a\.csv \(a, b, c, d\)",
             differ, "d")
    (tmp_path / "empty").mkdir()
    _refusal(r"empty: the directory holds no data files", tmp_path / "empty", "y")


def test_arrays_that_cannot_be_read_by_rows_are_refused(tmp_path):
    fortran = str(tmp_path / "fortran.npy")
    np.save(fortran, np.asfortranarray(np.ones((3, 2))))
    _refusal(r"fortran\.npy: the array is stored in Fortran \(column-major\) order", fortran, "1")
    flat = str(tmp_path / "flat.npy")
    np.save(flat, np.ones(4))
    _refusal(r"flat\.npy: expected a 2-D array \(rows, columns\), got shape \(4,\)", flat, "0")
    text = str(tmp_path / "text.npy")
    np.save(text, np.array([["a", "b"]]))
    _refusal(r"text\.npy: array 'the array' has dtype <U1; expected numbers", text, "1")
    truncated = str(tmp_path / "cut.npy")
    np.save(truncated, np.ones((100, 2)))
    with open(truncated, "r+b") as handle:
        handle.truncate(os.path.getsize(truncated) - 8)
    _refusal(r"cut\.npy is not a readable \.npy file: it holds \d+ bytes", truncated, "1")
    archive = str(tmp_path / "d.npz")
    np.savez(archive, x=np.ones(3), y=np.ones(3))
    _refusal(r"d\.npz: a \.npz archive cannot be read by row ranges", archive, "y")
    _refusal("does not exist", str(tmp_path / "nope.npy"), "1")


def test_a_file_changed_after_open_is_refused(tmp_path):
    path = _write(tmp_path, "csv", np.ones((5, 4)))
    rows = open_rows(path, "d")
    _write_text(path, np.ones((9, 4)))
    with pytest.raises(pyfit.DataError, match=r"data\.csv changed since it was opened"):
        rows.read(0, 2)


def test_bad_ranges_and_settings_are_input_errors(tmp_path):
    rows = open_rows(_write(tmp_path, "npy", np.ones((5, 2))), "1")
    for start, stop in [(-1, 2), (3, 2), (0, 6), (0.5, 2)]:
        with pytest.raises(pyfit.InputError, match=r"start|stop|rows \["):
            rows.read(start, stop)
    with pytest.raises(pyfit.InputError, match="chunk_rows must be an integer >= 1, got 0"):
        rows.chunks(0, 5, 0)
    with pytest.raises(pyfit.InputError, match="chunk_bytes must be an integer >= 1"):
        rows.rows_per_chunk(0)
    with pytest.raises(pyfit.InputError, match="dtype must be torch.float32 or torch.float64"):
        open_rows(rows.path, "1", dtype=torch.float16)


_STREAM = textwrap.dedent("""
    import json, sys
    import torch, pyfit
    from pyfit.row_files import open_rows

    def peak():  # the most resident memory this process has held so far, in bytes
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))

    def add(sums, X, y):
        return sums + torch.cat([torch.as_tensor(X).reshape(len(X), -1),
                                 torch.as_tensor(y).reshape(len(y), -1)], dim=1).sum(dim=0)

    path, target, chunk_bytes = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(1)
    rows = open_rows(path, target, dtype=torch.float64)
    chunk = rows.rows_per_chunk(chunk_bytes)
    add(0.0, *rows.read(0, 1))  # the first use of each library function pages in its code: not data
    before = peak()
    sums, count = 0.0, 0
    for X, y in rows.chunks(0, rows.rows, chunk):
        sums = add(sums, X, y)
        count += 1
    streamed = peak()
    data = pyfit.load_data(path, target)
    print(json.dumps({"chunks": count, "sums": sums.tolist(), "whole_sums": add(0.0, data.X, data.y).tolist(),
                      "stream_growth": streamed - before, "whole_growth": peak() - streamed}))
""")


def _stream(path, target, chunk_bytes):
    """Stream a file through RowFile in a fresh process; then read it whole with load_data."""
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [
        os.path.dirname(os.path.dirname(os.path.abspath(pyfit.__file__))), os.environ.get("PYTHONPATH")])))
    finished = subprocess.run([sys.executable, "-c", _STREAM, path, target, str(chunk_bytes)], env=environment,
                              capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    return json.loads(finished.stdout)


@pytest.mark.parametrize("kind", ["npy", "csv"])
def test_streaming_a_large_file_holds_a_few_chunks_in_memory(tmp_path, kind):
    values = np.random.default_rng(3).normal(size=(500_000, 10) if kind == "npy" else (40_000, 10))
    path = str(tmp_path / f"large.{kind}")
    if kind == "npy":
        np.save(path, values)  # 40 MB
    else:
        np.savetxt(path, values, delimiter=",", header=",".join("abcdefghij"), comments="")
    chunk_bytes = 2**20
    report = _stream(path, "9" if kind == "npy" else "j", chunk_bytes)
    assert report["chunks"] >= 10
    np.testing.assert_allclose(report["sums"], report["whole_sums"], rtol=1e-9, atol=1e-9)
    # at the peak a loop holds the chunk it is done with, the one being read, and here the sum's copy
    assert report["stream_growth"] < 4 * chunk_bytes, report
    assert report["whole_growth"] > 0.8 * os.path.getsize(path), report  # the measure sees a whole-file read
