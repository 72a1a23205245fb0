"""pyfit.data: CSV, .npy and .npz files as X and y, and errors that say where the data is bad."""

import numpy as np
import pytest

import pyfit
from pyfit.data import load_features, read_table


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_csv_with_header(tmp_path):
    path = _write(tmp_path, "d.csv", "x, z ,y\n1,2,3\n4,5,6\n\n7,8,9\n")
    data = pyfit.load_data(path, target="y")
    assert data.features == ["x", "z"] and data.target == ["y"]
    np.testing.assert_array_equal(data.X, [[1, 2], [4, 5], [7, 8]])
    np.testing.assert_array_equal(data.y, [3, 6, 9])
    picked = pyfit.load_data(path, target="x,y", features="z")
    assert picked.X.shape == (3, 1) and picked.y.shape == (3, 2)


def test_tsv_and_quoted_cells(tmp_path):
    data = pyfit.load_data(_write(tmp_path, "d.tsv", "a\tb\n1\t2\n3\t4\n"), target="b")
    np.testing.assert_array_equal(data.y, [2, 4])
    data = pyfit.load_data(_write(tmp_path, "q.csv", '"a","b"\n"1.5","2e3"\n'), target="b")
    assert data.X[0, 0] == 1.5 and data.y[0] == 2000.0


def test_missing_value_names_row_and_column(tmp_path):
    path = _write(tmp_path, "d.csv", "x,y\n1,2\n3,\n5,6\n")
    with pytest.raises(pyfit.DataError, match=r"d\.csv: missing value at row 3, column 'y'"):
        pyfit.load_data(path, target="y")


def test_non_numeric_cell_names_row_and_column(tmp_path):
    path = _write(tmp_path, "d.csv", "x,y\n1,2\n3,4\nseven,8\n")
    with pytest.raises(pyfit.DataError, match=r"non-numeric value 'seven' at row 4, column 'x'"):
        pyfit.load_data(path, target="y")


def test_bad_cell_in_an_unused_column_is_fine(tmp_path):
    path = _write(tmp_path, "d.csv", "x,note,y\n1,hello,2\n3,,4\n")
    assert pyfit.load_data(path, target="y", features="x").X.shape == (2, 1)


def test_unknown_column_lists_the_available_ones(tmp_path):
    path = _write(tmp_path, "d.csv", "x,y\n1,2\n")
    with pytest.raises(pyfit.DataError, match=r"unknown target column 'price'; available columns: x, y"):
        pyfit.load_data(path, target="price")
    with pytest.raises(pyfit.DataError, match=r"unknown feature column 'w'"):
        pyfit.load_data(path, target="y", features="x,w")


def test_ragged_rows_and_empty_files(tmp_path):
    with pytest.raises(pyfit.DataError, match=r"row 3 has 3 fields, but the header has 2"):
        pyfit.load_data(_write(tmp_path, "r.csv", "x,y\n1,2\n3,4,5\n"), target="y")
    with pytest.raises(pyfit.DataError, match=r"e\.csv is empty"):
        pyfit.load_data(_write(tmp_path, "e.csv", ""), target="y")
    with pytest.raises(pyfit.DataError, match=r"b\.csv is empty"):
        pyfit.load_data(_write(tmp_path, "b.csv", "\n\n"), target="y")
    with pytest.raises(pyfit.DataError, match=r"has a header \(x, y\) but no rows"):
        pyfit.load_data(_write(tmp_path, "h.csv", "x,y\n"), target="y")
    with pytest.raises(pyfit.DataError, match="does not exist"):
        pyfit.load_data(str(tmp_path / "nope.csv"), target="y")
    assert issubclass(pyfit.DataError, pyfit.InputError)


def test_npy_columns_are_named_by_index(tmp_path):
    path = str(tmp_path / "d.npy")
    np.save(path, np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    data = pyfit.load_data(path, target="2")
    assert data.features == ["0", "1"]
    np.testing.assert_array_equal(data.y, [3.0, 6.0])
    np.save(path, np.array([[1.0, np.nan], [2.0, 3.0]]))
    with pytest.raises(pyfit.DataError, match=r"missing value \(NaN\) at row 1, column '1'"):
        pyfit.load_data(path, target="1")
    np.save(path, np.zeros(3))
    with pytest.raises(pyfit.DataError, match="expected a 2-D array"):
        pyfit.load_data(path, target="0")


def test_npz_named_columns_or_one_matrix(tmp_path):
    path = str(tmp_path / "d.npz")
    np.savez(path, x=np.arange(3.0), y=np.arange(3.0) * 2)
    data = pyfit.load_data(path, target="y")
    assert data.features == ["x"] and data.y.tolist() == [0.0, 2.0, 4.0]
    np.savez(path, table=np.ones((4, 2)))
    assert read_table(path).names == ["0", "1"]
    np.savez(path, x=np.arange(3.0), y=np.arange(4.0))
    with pytest.raises(pyfit.DataError, match="different lengths"):
        pyfit.load_data(path, target="y")


def test_load_features_for_predictions(tmp_path):
    path = _write(tmp_path, "d.csv", "x,z\n1,2\n3,4\n")
    np.testing.assert_array_equal(load_features(path, ["z"]), [[2.0], [4.0]])


def test_values_too_large_for_the_fits_dtype_name_the_file_row_and_column(tmp_path):
    import torch

    path = _write(tmp_path, "big.csv", "x,y\n1,2\n1e308,3\n")
    with pytest.raises(pyfit.DataError, match=r"big\.csv: value 1e308 at row 3, column 'x' is too large for "
                                              r"float32"):
        pyfit.load_data(path, target="y", dtype=torch.float32)
    assert pyfit.load_data(path, target="y", dtype=torch.float64).X[1, 0] == 1e308
    npy = str(tmp_path / "big.npy")
    np.save(npy, np.array([[1.0, 2.0], [3.0, -1e39]]))
    with pytest.raises(pyfit.DataError, match=r"big\.npy: value -1e\+39 at row 2, column '1' is too large for "
                                              r"float32"):
        pyfit.load_data(npy, target="1", dtype=np.float32)
    with pytest.raises(pyfit.DataError, match="row 3, column 'x'"):
        load_features(path, ["x"], dtype=torch.float32)


def test_complex_arrays_are_refused_not_truncated(tmp_path):
    npy, npz = str(tmp_path / "c.npy"), str(tmp_path / "c.npz")
    np.save(npy, np.array([[1 + 2j, 3.0], [2.0, 4.0]]))
    with pytest.raises(pyfit.DataError, match=r"c\.npy: array 'the array' has complex dtype complex128"):
        pyfit.load_data(npy, target="1")
    np.savez(npz, x=np.array([1.0, 2.0]), y=np.array([1j, 2.0]))
    with pytest.raises(pyfit.DataError, match=r"c\.npz: array 'y' has complex dtype"):
        pyfit.load_data(npz, target="y")


def test_a_column_cannot_be_both_feature_and_target(tmp_path):
    path = _write(tmp_path, "d.csv", "x,y\n1,2\n3,4\n")
    with pytest.raises(pyfit.DataError, match=r"d\.csv: column 'y' is both a feature and a target"):
        pyfit.load_data(path, target="y", features="y")
    with pytest.raises(pyfit.DataError, match="column 'y' is both"):
        pyfit.load_data(path, target="y", features="x,y")
    with pytest.raises(pyfit.DataError, match="feature column 'x' is named twice"):
        pyfit.load_data(path, target="y", features="x,x")
