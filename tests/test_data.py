"""Tests of tinynet.datasets.idx: reading, checking and splitting IDX datasets."""

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tinynet.datasets.idx import (MAX_SIDE, DataError, Split, dataset_paths, load_split, read_idx_images,
                                  read_idx_labels, read_mapping, stored_transposed, to_float, train_val_split)
from tinynet.datasets.idx import write_idx
from tinynet.testing.hostile import CAN_MEASURE, idx_gzip_bomb, measure

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PUBLISHED = {  # sha256 published with the task for the files in ../shared/data
    "emnist-bymerge-test-images-idx3-ubyte.gz":
        "5e5815ec1b522089134435f7c55e75a00960b58414793593ffff23efc0821683",
    "emnist-bymerge-test-labels-idx1-ubyte.gz":
        "8bda1516255683ba9071e141947ca0c91a911176065cdd6259b0b4d8dc5b5f35",
    "emnist-bymerge-mapping.txt":
        "956dc507bf69e9f31f4e3e876d22ec66124aa229b5d0bd65ab8956a8044d3ede",
}
EMNIST47 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabdefghnqrt"
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def make_dataset(folder, name="tiny", counts=(("train", 12), ("test", 6)), n_classes=3,
                 gz=True, seed=0):
    """Write a small random dataset the EMNIST way; return {split: (upright images, labels)}."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    written = {}
    for split, n in counts:
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % n_classes).astype(np.uint8)
        write_idx(folder / f"{name}-{split}-images-idx3-ubyte{suffix}", images.transpose(0, 2, 1))
        write_idx(folder / f"{name}-{split}-labels-idx1-ubyte{suffix}", labels)
        written[split] = images, labels
    mapping = "".join(f"{k} {ord('A') + k}\r\n" for k in range(n_classes))
    (folder / f"{name}-mapping.txt").write_bytes(mapping.encode())
    return written


def data_error(call, *args):
    """The DataError that call(*args) raises, checked to come without a NumPy traceback."""
    with pytest.raises(DataError) as info:
        call(*args)
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__
    assert not any("numpy" in str(entry.path) for entry in info.traceback)
    message = str(info.value)
    assert "\n" not in message
    return message


def idx_bytes(array):
    array = np.asarray(array, dtype=np.uint8)
    return struct.pack(f">HBB{array.ndim}I", 0, 8, array.ndim, *array.shape) + array.tobytes()


# --- reading good files ------------------------------------------------------------------


def test_images_are_made_upright_once(tmp_path):
    upright = np.zeros((2, 28, 28), np.uint8)
    upright[0, 0, 5] = 200  # top row, column 5
    upright[1, 27, :] = 9   # bottom row
    write_idx(tmp_path / "x-images-idx3-ubyte", upright.transpose(0, 2, 1))
    raw = (tmp_path / "x-images-idx3-ubyte").read_bytes()
    assert raw[16 + 5 * 28] == 200  # stored transposed, as in EMNIST files
    images = read_idx_images(tmp_path / "x-images-idx3-ubyte")
    assert images.dtype == np.uint8 and images.flags.c_contiguous
    np.testing.assert_array_equal(images, upright)


@pytest.mark.parametrize("gz", [True, False])
def test_load_split(tmp_path, gz):
    written = make_dataset(tmp_path, gz=gz)
    for split in ("train", "test"):
        loaded = load_split(tmp_path, "tiny", split)
        assert isinstance(loaded, Split)
        np.testing.assert_array_equal(loaded.images, written[split][0])
        np.testing.assert_array_equal(loaded.labels, written[split][1])
        assert loaded.images.dtype == np.uint8 and loaded.labels.dtype == np.int64
        assert loaded.classes == ("A", "B", "C")
        assert loaded.source.endswith(f"tiny-{split}-images-idx3-ubyte" + (".gz" if gz else ""))


def test_dataset_paths_finds_plain_or_gz(tmp_path):
    make_dataset(tmp_path, gz=True)
    make_dataset(tmp_path, counts=(("train", 3),), gz=False)
    paths = dataset_paths(tmp_path, "tiny", "train")
    assert paths == {"images": tmp_path / "tiny-train-images-idx3-ubyte.gz",
                     "labels": tmp_path / "tiny-train-labels-idx1-ubyte.gz",
                     "mapping": tmp_path / "tiny-mapping.txt"}
    (tmp_path / "tiny-train-labels-idx1-ubyte.gz").unlink()
    assert dataset_paths(tmp_path, "tiny", "train")["labels"].name == "tiny-train-labels-idx1-ubyte"


def test_a_single_split_loads_without_the_other(tmp_path):
    make_dataset(tmp_path, counts=(("test", 4),))
    assert len(load_split(tmp_path, "tiny", "test").labels) == 4
    message = data_error(load_split, tmp_path, "tiny", "train")
    assert "tiny-train-images-idx3-ubyte" in message


def test_mapping_with_crlf_and_letters_style_labels(tmp_path):
    """EMNIST Letters: labels 1..26 in its files, two codes a line; loaded as 0..K-1."""
    make_dataset(tmp_path, name="letters", n_classes=3)
    write_idx(tmp_path / "letters-test-labels-idx1-ubyte.gz", np.array([1, 2, 3, 1, 2, 3], np.uint8))
    (tmp_path / "letters-mapping.txt").write_bytes(b"1 65 97\r\n2 66 98\r\n3 67 99\r\n")
    loaded = load_split(tmp_path, "letters", "test")
    assert loaded.classes == ("Aa", "Bb", "Cc")
    np.testing.assert_array_equal(loaded.labels, [0, 1, 2, 0, 1, 2])
    assert read_mapping(tmp_path / "letters-mapping.txt") == ("Aa", "Bb", "Cc")


def test_to_float():
    images = np.array([[[0, 255] * 14] * 28] * 3, np.uint8)
    x = to_float(images)
    assert x.shape == (3, 1, 28, 28) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_allclose(to_float(np.full((1, 28, 28), 51, np.uint8)), 0.2, rtol=1e-6)


# --- validation split ---------------------------------------------------------------------


def test_train_val_split_is_stratified_deterministic_and_disjoint():
    labels = np.repeat(np.arange(5), [100, 50, 20, 10, 1])
    np.random.default_rng(1).shuffle(labels)
    train, val = train_val_split(labels, 0.2, seed=7)
    assert train.dtype == np.int64 and val.dtype == np.int64
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(len(labels)))
    np.testing.assert_array_equal(np.bincount(labels[val], minlength=5), [20, 10, 4, 2, 0])
    again = train_val_split(labels, 0.2, seed=7)
    np.testing.assert_array_equal(again[1], val)
    assert not np.array_equal(train_val_split(labels, 0.2, seed=8)[1], val)
    assert len(train_val_split(labels, 0.0, seed=0)[1]) == 0


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_train_val_split_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split(np.zeros(10, np.int64), fraction, seed=0)


# --- bad input: every case names the file and says what is wrong -----------------------------


def test_missing_files_list_names_and_how_to_get_them(tmp_path):
    message = data_error(dataset_paths, tmp_path, "emnist-balanced", "train")
    for name in ("emnist-balanced-train-images-idx3-ubyte.gz", "emnist-balanced-train-images-idx3-ubyte",
                 "emnist-balanced-train-labels-idx1-ubyte.gz", "emnist-balanced-mapping.txt"):
        assert name in message
    assert str(tmp_path) in message
    assert (f"python3 -m tinynet download --dataset emnist-balanced --data-dir {tmp_path}"
            in message)
    assert "--from PATH" in message


def test_missing_folder(tmp_path):
    message = data_error(load_split, tmp_path / "nowhere", "tiny", "test")
    assert "nowhere/ (no such folder)" in message


def test_unknown_split(tmp_path):
    assert "unknown split 'val'" in data_error(load_split, tmp_path, "tiny", "val")


@pytest.mark.parametrize("name", ["x-images-idx3-ubyte", "x-images-idx3-ubyte.gz"])
def test_truncated_file(tmp_path, name):
    path = tmp_path / name
    full = idx_bytes(np.zeros((5, 28, 28)))
    data = full[:1000]
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    message = data_error(read_idx_images, path)
    assert message.startswith(f"{path}: truncated: header says 5 images of 28x28 (3936 bytes) but ")
    assert message.endswith("the file holds 1000 bytes" if name.endswith("ubyte")
                            else "the gzip stream holds 1000 bytes")


def test_truncated_header(tmp_path):
    path = tmp_path / "x-labels-idx1-ubyte"
    path.write_bytes(idx_bytes(np.zeros(3))[:6])
    assert data_error(read_idx_labels, path) == (
        f"{path}: truncated: 6 bytes, too short for the 8-byte IDX header")


def test_header_claiming_huge_count_is_refused_without_allocating(tmp_path):
    header = struct.pack(">IIII", 2051, 2**32 - 1, 28, 28)
    plain, gz = tmp_path / "x-images-idx3-ubyte", tmp_path / "y-images-idx3-ubyte.gz"
    plain.write_bytes(header + bytes(100))
    gz.write_bytes(gzip.compress(header + bytes(100)))
    assert data_error(read_idx_images, plain) == (
        f"{plain}: truncated: header says 4294967295 images of 28x28 (3367254359296 bytes) "
        f"but the file holds 116 bytes")
    assert "cannot hold that many" in data_error(read_idx_images, gz)


def test_trailing_data(tmp_path):
    plain = tmp_path / "x-labels-idx1-ubyte"
    plain.write_bytes(idx_bytes([1, 2, 3]) + b"\0")
    assert data_error(read_idx_labels, plain) == (
        f"{plain}: trailing data: header says 3 labels (11 bytes) but the file holds 12 bytes")
    gz = tmp_path / "x-labels-idx1-ubyte.gz"
    gz.write_bytes(gzip.compress(idx_bytes([1, 2, 3]) + b"\0"))
    assert "trailing data: header says 3 labels (11 bytes) but the gzip stream holds more" in (
        data_error(read_idx_labels, gz))


@pytest.mark.parametrize("reader", [read_idx_images, read_idx_labels])
def test_wrong_magic(tmp_path, reader):
    path = tmp_path / "x-idx-ubyte"
    other = np.zeros(4) if reader is read_idx_images else np.zeros((1, 28, 28))
    path.write_bytes(idx_bytes(other))
    wrong, right = (2049, 2051) if reader is read_idx_images else (2051, 2049)
    assert data_error(reader, path) == (
        f"{path}: wrong magic number {wrong} (0x{wrong:08x}), expected {right} for an IDX "
        f"{'images' if right == 2051 else 'labels'} file")


def test_images_of_any_size_are_read_upright_and_absurd_sizes_refused_from_the_header(tmp_path):
    """Images of any height and width from 1 to MAX_SIDE are read (before issue #38, anything
    but 28x28 was refused); a header declaring 0 or more than MAX_SIDE pixels a side is refused
    before any image is read (here the file holds only the header)."""
    upright = np.random.default_rng(0).integers(0, 256, (3, 32, 24), dtype=np.uint8)
    path = tmp_path / "x-images-idx3-ubyte.gz"
    write_idx(path, upright.transpose(0, 2, 1))
    assert np.array_equal(read_idx_images(path), upright)
    write_idx(path, upright)
    assert np.array_equal(read_idx_images(path, transposed=False), upright)
    for dims in ((2, 0, 28), (1, 28, MAX_SIDE + 1), (1, 2**31, 2**31)):
        path.write_bytes(gzip.compress(struct.pack(">HBB3I", 0, 8, 3, *dims)))
        assert data_error(read_idx_images, path) == (
            f"{path}: image size {dims[1]}x{dims[2]} is not one tinynet reads (height and width from 1 "
            f"to {MAX_SIDE} pixels)")


@pytest.mark.parametrize("name, orientation, transposed", [
    ("emnist-balanced", None, True), ("tiny", None, True), ("mnist", None, False), ("Fashion-MNIST", None, False),
    ("kmnist49", None, False), ("qmnist", None, False), ("emnist-mnist", None, True),
    ("mnist", "transposed", True), ("emnist-letters", "upright", False), ("digits", "upright", False)])
def test_how_a_set_stores_its_images_is_said_by_its_name_or_its_orientation(tmp_path, name, orientation, transposed):
    """EMNIST's files store images transposed, MNIST's, Fashion-MNIST's and KMNIST's upright: by the
    name unless ``orientation`` says; load_split always returns them upright."""
    assert stored_transposed(name, orientation) is transposed
    written = make_dataset(tmp_path, name=name, counts=(("test", 4),))
    images = load_split(tmp_path, name, "test", orientation).images
    assert np.array_equal(images, written["test"][0] if transposed else written["test"][0].transpose(0, 2, 1))
    with pytest.raises(ValueError, match="orientation must be one of transposed, upright, got 'sideways'"):
        stored_transposed(name, "sideways")


def test_count_mismatch(tmp_path):
    make_dataset(tmp_path, counts=(("test", 6),))
    labels = tmp_path / "tiny-test-labels-idx1-ubyte.gz"
    write_idx(labels, np.zeros(5, np.uint8))
    assert data_error(load_split, tmp_path, "tiny", "test") == (
        f"{labels}: count mismatch: 5 labels but {tmp_path}/tiny-test-images-idx3-ubyte.gz "
        f"holds 6 images")


def test_label_out_of_range(tmp_path):
    make_dataset(tmp_path, counts=(("test", 6),), n_classes=3)
    labels = tmp_path / "tiny-test-labels-idx1-ubyte.gz"
    write_idx(labels, np.array([0, 1, 2, 3, 0, 0], np.uint8))
    assert data_error(load_split, tmp_path, "tiny", "test") == (
        f"{labels}: label 3 out of range: {tmp_path}/tiny-mapping.txt maps labels 0..2")


def test_corrupt_gzip(tmp_path):
    not_gzip = tmp_path / "a-labels-idx1-ubyte.gz"
    not_gzip.write_bytes(idx_bytes([1, 2, 3]))
    assert data_error(read_idx_labels, not_gzip).startswith(f"{not_gzip}: corrupt gzip: ")

    flipped = tmp_path / "b-labels-idx1-ubyte.gz"  # one byte of the CRC changed
    data = bytearray(gzip.compress(idx_bytes(np.arange(200))))
    data[-6] ^= 0xFF
    flipped.write_bytes(bytes(data))
    assert "corrupt gzip" in data_error(read_idx_labels, flipped)

    cut = tmp_path / "c-labels-idx1-ubyte.gz"  # whole IDX inside, gzip trailer missing
    cut.write_bytes(gzip.compress(idx_bytes(np.arange(200)))[:-8])
    assert data_error(read_idx_labels, cut) == (
        f"{cut}: corrupt gzip: compressed stream is truncated (no end-of-stream marker)")

    garbage_after = tmp_path / "d-labels-idx1-ubyte.gz"
    garbage_after.write_bytes(gzip.compress(idx_bytes([1, 2])) + b"junk")
    assert "unexpected bytes after the end of the gzip stream" in (
        data_error(read_idx_labels, garbage_after))


@pytest.mark.parametrize("name", ["x-images-idx3-ubyte", "x-images-idx3-ubyte.gz"])
def test_empty_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    assert data_error(read_idx_images, tmp_path / name) == f"{tmp_path / name}: empty file"


def test_directory_where_a_file_is_expected(tmp_path):
    make_dataset(tmp_path, counts=(("test", 3),))
    images = tmp_path / "tiny-test-images-idx3-ubyte.gz"
    images.unlink()
    images.mkdir()
    assert data_error(load_split, tmp_path, "tiny", "test") == (
        f"{images}: is a directory, expected an IDX file")
    assert data_error(read_mapping, tmp_path) == f"{tmp_path}: is a directory, expected a mapping file"


@pytest.mark.parametrize("content, problem", [
    (b"", "empty file"),
    (b"0 48\r\n1 x\r\n", "line 2: expected `label ascii-code`, got '1 x'"),
    (b"0 48\n2 50\n", "labels must be consecutive and increasing"),
    (b"0 48\n\xff\n", "not a mapping file: holds non-ASCII bytes"),
    (b"\n \n", "no `label ascii-code` lines"),
    (b"0 99999999\n", "line 1: expected `label ascii-code`"),
])
def test_bad_mapping(tmp_path, content, problem):
    path = tmp_path / "x-mapping.txt"
    path.write_bytes(content)
    assert data_error(read_mapping, path).startswith(f"{path}: {problem}")


# --- properties -------------------------------------------------------------------------------


@FUZZ
@given(labels=arrays(np.uint8, st.integers(0, 300)), gz=st.booleans())
def test_idx_labels_round_trip(tmp_path, labels, gz):
    path = tmp_path / ("l-labels-idx1-ubyte" + (".gz" if gz else ""))
    write_idx(path, labels)
    np.testing.assert_array_equal(read_idx_labels(path), labels)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stored=arrays(np.uint8, st.tuples(st.integers(0, 3), st.just(28), st.just(28))),
       gz=st.booleans())
def test_idx_images_round_trip(tmp_path, stored, gz):
    path = tmp_path / ("i-images-idx3-ubyte" + (".gz" if gz else ""))
    write_idx(path, stored)
    np.testing.assert_array_equal(read_idx_images(path), stored.transpose(0, 2, 1))


def _idx_like():
    """Bytes that are often close to a valid IDX file: real magic and dims, random rest."""
    header = st.builds(lambda magic, dims: struct.pack(">I", magic) + b"".join(
        struct.pack(">I", d) for d in dims),
        st.sampled_from([2049, 2051, 2050, 0x0801, 0]),
        st.lists(st.sampled_from([0, 1, 2, 3, 28, 2**32 - 1]), max_size=3))
    return st.builds(lambda h, rest: h + rest, header, st.binary(max_size=200))


def test_zero_images_of_an_impossible_size_is_a_data_error(tmp_path):
    """0 images of 4294967295 x 4294967295: no bytes to read, but a shape NumPy cannot make (found
    by the fuzz test below)."""
    path = tmp_path / "f-images-idx3-ubyte"
    path.write_bytes(struct.pack(">IIII", 2051, 0, 2**32 - 1, 2**32 - 1))
    with pytest.raises(DataError, match=f"{path}: header says 0 images of 4294967295x4294967295, a shape "
                                        f"too large for any array"):
        read_idx_images(path)


@FUZZ
@given(content=st.one_of(st.binary(max_size=300), _idx_like()),
       gzipped=st.sampled_from(["no", "yes", "cut", "named-only"]))
def test_arbitrary_bytes_raise_only_data_error(tmp_path, content, gzipped):
    """Plain bytes, gzipped bytes, gzipped bytes cut short, and bytes merely named .gz."""
    suffix = "" if gzipped == "no" else ".gz"
    data = {"yes": gzip.compress(content), "cut": gzip.compress(content)[:-1 - len(content) // 2]
            }.get(gzipped, content)
    for reader, name in ((read_idx_images, "f-images-idx3-ubyte"),
                         (read_idx_labels, "f-labels-idx1-ubyte"),
                         (read_mapping, "f-mapping.txt")):
        path = tmp_path / (name + suffix)
        path.write_bytes(data)
        try:
            reader(path)
        except DataError as e:
            assert str(path) in str(e)


# --- the real EMNIST files in ../shared/data ---------------------------------------------------


def shared(folder):
    path = SHARED / folder
    if not path.is_dir():
        pytest.skip(f"{path} not present (real EMNIST files live in ../shared/data next to the repo)")
    return path


@pytest.fixture(scope="module")
def bymerge_test():
    return load_split(shared("emnist-bymerge"), "emnist-bymerge", "test")


def test_bymerge_files_match_published_sha256():
    folder = shared("emnist-bymerge")
    for name, sha256 in PUBLISHED.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == sha256, name


def test_bymerge_test_split_loads(bymerge_test):
    assert bymerge_test.images.shape == (116323, 28, 28)
    assert bymerge_test.images.dtype == np.uint8 and bymerge_test.labels.dtype == np.int64
    assert "".join(bymerge_test.classes) == EMNIST47
    assert set(np.unique(bymerge_test.labels)) == set(range(47))


def test_bymerge_images_are_upright(bymerge_test):
    """The mean '7' has its ink high up and the mean 'L' low down (transposed, both flip)."""
    def mean_image(char):
        return bymerge_test.images[bymerge_test.labels == EMNIST47.index(char)].mean(axis=0)
    seven, ell = mean_image("7"), mean_image("L")
    assert seven[:14].mean() > 1.5 * seven[14:].mean()
    assert ell[14:].mean() > 1.2 * ell[:14].mean()
    assert ell[:, :14].mean() > ell[:, 14:].mean()  # the L's stem is on the left


def test_bymerge_resplit_loads():
    folder = shared("emnist-bymerge-resplit")
    train = load_split(folder, "emnist-bymerge-resplit", "train")
    test = load_split(folder, "emnist-bymerge-resplit", "test")
    assert train.images.shape == (97523, 28, 28) and test.images.shape == (18800, 28, 28)
    assert len(train.classes) == len(test.classes) == 47
    train_idx, val_idx = train_val_split(train.labels, 0.1, seed=0)
    assert len(val_idx) == pytest.approx(9752, abs=47)


def test_balanced_labels_and_missing_images_message():
    folder = shared("emnist-balanced")
    labels = read_idx_labels(folder / "emnist-balanced-train-labels-idx1-ubyte.gz")
    np.testing.assert_array_equal(np.bincount(labels), [2400] * 47)
    assert "".join(read_mapping(folder / "emnist-balanced-mapping.txt")) == EMNIST47
    message = data_error(load_split, folder, "emnist-balanced", "test")
    assert "emnist-balanced-test-images-idx3-ubyte.gz" in message and "--from PATH" in message


@pytest.mark.skipif(not CAN_MEASURE, reason="measuring peak memory needs Linux's /proc")
def test_a_gzip_bomb_is_refused_before_inflating(tmp_path):
    """Issue 42: a gzip that inflates far more than real data does (200 MB of black images in
    0.2 MB) is refused from its header in a fresh process that grows by less than 50 MB (1 MB of
    such a gzip once made a 1 GB array with a 2.9 GB peak); a file within 64 MB still reads,
    however well it compresses."""
    bomb = tmp_path / "bomb-train-images-idx3-ubyte.gz"
    bomb.write_bytes(idx_gzip_bomb(200))
    got = measure("tinynet.datasets.idx:read_idx_images", str(bomb), preload=("tinynet.datasets.idx",),
                  limit=2 << 30)
    assert "refused: header says 255102 images of 28x28" in got["answer"], got
    assert "more than 64 times as many" in got["answer"] and got["peak"] < 50 << 20, got
    small = tmp_path / "small-train-images-idx3-ubyte.gz"
    small.write_bytes(idx_gzip_bomb(50))
    assert read_idx_images(small).shape == (63775, 28, 28)
