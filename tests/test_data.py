import io
import re

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from apfed.config import make_config
from apfed.data import load_bundled, load_image_dir, load_party_files, read_party_file
from apfed.errors import DataError
from apfed.runner import run


def test_mnist5k_split_is_the_reference_split():
    ds = load_bundled("mnist5k")
    tr, te = train_test_split(range(5000), test_size=0.2, stratify=ds.labels, random_state=0)
    assert np.array_equal(ds.train_idx, tr) and np.array_equal(ds.test_idx, te)
    assert ds.views[0].shape == (1, 14, 28) and ds.labels.shape == (5000,)
    assert np.bincount(ds.labels).tolist() == [500] * 10


@pytest.mark.parametrize("classes", [2, 3, 10])
def test_too_few_rows_for_a_stratified_split_is_a_clear_error_and_the_named_count_suffices(classes):
    """sklearn refuses a split whose test or training part cannot hold every class (a traceback before); the
    error names the fewest rows that work, and that many rows split with every class on both sides."""
    from apfed.data.splits import stratified_split

    with pytest.raises(DataError, match=r"too few .*at least (\d+) rows") as e:
        stratified_split(np.arange(2 * classes) % classes)
    need = int(re.search(r"at least (\d+) rows", str(e.value)).group(1))
    with pytest.raises(DataError, match="too few"):
        stratified_split(np.arange(need - 1) % classes)
    y = np.arange(need) % classes
    tr, te = stratified_split(y)
    assert set(y[tr]) == set(y[te]) == set(range(classes))


def test_strips_follow_the_reference():
    ds = load_bundled("mnist5k", 3)
    assert [v.shape for v in ds.views] == [(1, 9, 28)] * 3  # floor(28/3) = 9 rows, the last row dropped
    z = ds.views[1].X
    assert z.dtype == np.uint8 and z.shape[0] == 5000


def test_handwritten_views():
    ds = load_bundled("handwritten")
    assert [v.name for v in ds.views] == ["fou", "fac", "kar", "pix", "zer", "mor"]
    assert [v.shape[0] for v in ds.views] == [76, 216, 64, 240, 47, 6]
    assert ds.view_index("fou") == 0 and ds.view_index("3") == 3
    with pytest.raises(DataError, match="unknown view"):
        ds.view_index("nope")


def test_alignment_by_id_with_shuffled_partially_overlapping_files(party_csvs):
    logs = []
    ds = load_party_files(party_csvs["paths"], "user_id", "label", log=logs.append)
    assert len(ds.ids) == party_csvs["common"]
    assert any("matched" in m for m in logs)
    ids = list(party_csvs["ids"])
    for v, X in zip(ds.views, party_csvs["X"], strict=True):
        rows = [ids.index(i) for i in ds.ids]  # where each aligned id sits in the original data
        assert np.allclose(v.X, X[rows], atol=1e-4)
    assert ds.class_names == ["class_0", "class_1", "class_2"]
    assert np.array_equal(
        np.array(ds.class_names)[ds.labels], [f"class_{party_csvs['y'][ids.index(i)]}" for i in ds.ids]
    )


def test_training_on_party_files_aligns_inside_the_protocol(party_csvs):
    ds = load_party_files(party_csvs["paths"], "user_id", "label", log=lambda m: None)
    r = run(ds, 0, make_config("default", method="apfed-kd", epochs=5))
    assert r.accuracy > 50  # 3 classes, informative features


def test_no_shared_ids_is_a_clear_error(tmp_path):
    (tmp_path / "a.csv").write_text("id,x,label\n1,0.5,a\n2,0.1,b\n")
    (tmp_path / "b.csv").write_text("id,y\n3,0.5\n4,0.1\n")
    with pytest.raises(DataError, match="no sample ID is shared"):
        load_party_files([tmp_path / "a.csv", tmp_path / "b.csv"], "id", "label")


def test_a_label_column_that_is_the_id_column_or_sits_in_a_passive_file_is_a_clear_error(tmp_path):
    """A passive's column named like the labels would train on them (TVFL then near 100 %, meaningless)."""
    rows = "".join(f"{i},{i * 0.1},{'ab'[i % 2]}\n" for i in range(20))
    (tmp_path / "a.csv").write_text("id,x,label\n" + rows)
    (tmp_path / "b.csv").write_text("id,y,label\n" + "".join(f"{i},{i * 0.3},{i % 2}\n" for i in range(20)))
    (tmp_path / "c.csv").write_text("id,y\n" + "".join(f"{i},{i * 0.3}\n" for i in range(20)))
    with pytest.raises(DataError, match="b.csv: a passive party's file has the label column 'label'"):
        load_party_files([tmp_path / "a.csv", tmp_path / "b.csv"], "id", "label", log=lambda m: None)
    with pytest.raises(DataError, match="the ID column and the label column are both 'id'"):
        load_party_files([tmp_path / "a.csv", tmp_path / "c.csv"], "id", "id", log=lambda m: None)
    ds = load_party_files([tmp_path / "a.csv", tmp_path / "c.csv"], "id", "label", log=lambda m: None)
    assert ds.views[1].columns == ["y"] and len(ds.ids) == 20


@pytest.mark.parametrize(
    "content, match",
    [
        ("id,x\n1,0.5\n", "no label column"),
        ("x,label\n0.5,a\n", "no ID column"),
        ("id,x,label\n1,abc,a\n2,7,b\n", r"column 'x' mixes numbers and text \(line 2: 'abc'\)"),
        ("id,x,label\n1,,a\n2,NA,b\n", "column 'x' has no value in any row; drop it"),
        ("id,x,label\n1,0.5\n", "fields"),
        ("id,x,label\n1,0.5,a\n1,0.7,b\n", "duplicate values: '1' appears 2 times$"),
        ("id,x,label\n1,0.5,a\n2,0.7,b\n1,0.2,a\n2,0.1,b\n2,0.1,b\n", "'1' appears 2 times, and 1 more duplicated ID$"),
        ("id,x,y,label\n1,0.5,0,a\n2,0.7,inf,b\n3,nan,-inf,b\n", "infinite values: ID '2', column 'y'; 2 rows have"),
        ("id,x,label\n", "at least one data row"),
        ("id,x,x,label\n1,0.5,0.9,a\n", "column names used more than once: 'x'"),  # was read as two copies of x
        ("id,x,label,label\n1,0.5,a,b\n", "more than once: 'label'"),
        (
            b"id,x,label\n\xa1\xff,0.5,a\n",
            r"not a readable CSV file: it is not UTF-8 text \(byte 0xa1\); save it as UTF-8",
        ),
        ("id,city,label\n1,Besan\xe7on,a\n".encode("cp1252"), r"not UTF-8 text \(byte 0xe7\).*iconv -f cp1252"),
    ],
)
def test_bad_files(tmp_path, content, match):
    f = tmp_path / "a.csv"
    if isinstance(content, bytes):
        f.write_bytes(content)
    else:
        f.write_text(content)
    with pytest.raises(DataError, match=match):
        read_party_file(f, "id", "label")


def test_csv_party_files_read_as_the_csv_module_reads_them(tmp_path):
    """The features come from numpy's parser, the IDs and labels from the csv module: both agree with a plain
    csv-module reading on quoting, doubled quotes, a line break inside a quoted ID, CRLF endings, a byte-order
    mark, an ID starting with '#', spaces around numbers and exponents."""
    import csv

    text = (
        "\ufeffid,x,label,y\r\n"
        '"a,1",1.5,cat,-2\r\n'
        '#b, 2.5 ,"dog ""big""",3e-2\r\n'
        '"c\nd","4",cat,+.5\r\n'
        "e,1E3,bird,7.\r\n"
    )
    f = tmp_path / "a.csv"
    f.write_bytes(text.encode("utf-8"))
    t = read_party_file(f, "id", "label")
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"), newline="")))
    assert t.columns == ["x", "y"]
    assert list(t.ids) == [r[0] for r in rows[1:]] == ["a,1", "#b", "c\nd", "e"]
    assert list(t.labels) == [r[2] for r in rows[1:]]
    assert t.X.dtype == np.float32
    assert np.array_equal(t.X, np.array([[float(r[1]), float(r[3])] for r in rows[1:]], np.float32))


@pytest.mark.parametrize(
    "content, match",
    [
        ("id,x,label\n1,0.5,a\n\n2,0.7,b\n", "line 3 has 0 fields"),  # numpy alone would skip the blank line
        ("id,x,label\n1,0.5,a\n2,0.7,b,c\n", "line 3 has 4 fields"),  # ... and ignore the extra field
        ("id,x,label\n1,0.5,a\n2,zz,b\n", r"column 'x' mixes numbers and text \(line 3: 'zz'\): .* categorical"),
        ("id,x,label\n1,5,a\n2,1_000,b\n", r"mixes numbers and text \(line 3: '1_000'\)"),  # float() takes 1_000
        ('id,"x\ny",label\n1,0.5,a\n', "line break"),
    ],
)
def test_csv_rows_that_are_not_a_table_of_numbers_are_refused(tmp_path, content, match):
    f = tmp_path / "a.csv"
    f.write_text(content)
    with pytest.raises(DataError, match=match):
        read_party_file(f, "id", "label")


def test_npz_party_file(tmp_path):
    np.savez(tmp_path / "p.npz", id=np.array(["a", "b"]), X=np.ones((2, 3), np.float32))
    t = read_party_file(tmp_path / "p.npz", "id")
    assert t.X.shape == (2, 3) and list(t.ids) == ["a", "b"]


def test_a_party_file_named_npz_that_is_not_an_npz_archive_is_a_clear_error(tmp_path):
    """np.load would return a .npy file's array (whose lack of ``files`` was a traceback) or try to unpickle."""
    npy, text, cut = tmp_path / "npy.npz", tmp_path / "text.npz", tmp_path / "cut.npz"
    np.save(npy.open("wb"), np.zeros((2, 3)))
    text.write_text("id,x\n1,2\n")
    np.savez(cut, id=np.array(["a", "b"]), X=np.ones((2, 3), np.float32))
    cut.write_bytes(cut.read_bytes()[:40])
    for path, match in ((npy, "not an NPZ archive"), (text, "not an NPZ archive"), (cut, "not a readable NPZ")):
        with pytest.raises(DataError, match=match):
            read_party_file(path, "id")


def _idx(path, arr):
    import struct

    header = b"\x00\x00\x08" + bytes([arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape)
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


def test_mnist_idx_directory(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("t10k", 10)):
        _idx(tmp_path / f"{split}-images-idx3-ubyte", rng.integers(0, 255, (n, 28, 28)))
        _idx(tmp_path / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, n))
    ds = load_image_dir("mnist", tmp_path, 2)
    assert len(ds.train_idx) == 20 and len(ds.test_idx) == 10 and ds.views[0].shape == (1, 14, 28)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x09")
    with pytest.raises(DataError, match="header says"):
        load_image_dir("mnist", tmp_path, 2)


def test_cifar10_directory(tmp_path):
    import pickle

    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(tmp_path / name, "wb") as f:
            pickle.dump(
                {b"data": rng.integers(0, 255, (4, 3072)).astype(np.uint8), b"labels": list(rng.integers(0, 10, 4))}, f
            )
    ds = load_image_dir("cifar10", tmp_path, 2)
    assert ds.views[0].shape == (3, 16, 32) and len(ds.train_idx) == 20


def test_cifar_batch_with_code_is_refused(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(tmp_path / name, "wb") as f:
            pickle.dump({b"data": Evil(), b"labels": [1]}, f)
    with pytest.raises(DataError, match="unexpected object"):
        load_image_dir("cifar10", tmp_path, 2)


def _cifar_dir(tmp_path, batch):
    import pickle

    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(tmp_path / name, "wb") as f:
            f.write(batch if isinstance(batch, bytes) else pickle.dumps(batch))


@pytest.mark.parametrize(
    "batch, match",
    [
        ([1, 2], "not a dict"),
        ({b"data": np.zeros((4, 3072), np.uint8)}, "needs 'data' and 'labels'"),
        ({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}, "rows of 3 x 32 x 32"),
        ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0] * 3}, "4 images but 3 labels"),
        # GLOBAL numpy._core.multiarray.empty, (2,), REDUCE: a numpy function, not a class a batch uses
        (b"\x80\x02cnumpy._core.multiarray\nempty\nK\x02\x85R.", "unexpected object numpy._core.multiarray.empty"),
        (b"garbage", "not a CIFAR python batch"),
    ],
)
def test_a_malformed_cifar_batch_is_a_clear_error(tmp_path, batch, match):
    _cifar_dir(tmp_path, batch)
    with pytest.raises(DataError, match=re.escape(match)):
        load_image_dir("cifar10", tmp_path, 2)


def test_mnist_images_and_labels_must_match(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("t10k", 10)):
        _idx(tmp_path / f"{split}-images-idx3-ubyte", rng.integers(0, 255, (n, 28, 28)))
        _idx(tmp_path / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, n - 1))
    with pytest.raises(DataError, match="20 images but 19 labels"):
        load_image_dir("mnist", tmp_path, 2)
    _idx(tmp_path / "train-images-idx3-ubyte", rng.integers(0, 255, (20, 784)))
    with pytest.raises(DataError, match="expected .n, rows, cols. images"):
        load_image_dir("mnist", tmp_path, 2)


def test_missing_image_dir():
    with pytest.raises(DataError, match="not found"):
        load_image_dir("mnist", "/nonexistent/dir")
