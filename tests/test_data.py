"""The data: loaders and their validation, preprocessing, the embedded data and its export."""

import math
import re

import h5py
import numpy as np
import pytest
from tinygrad_ee.tasks.data import embedded
from tinygrad_ee.tasks.data.checks import DataError
from tinygrad_ee.tasks.data.embedded import (
    ACTIVITY_CLASSES,
    SHIPPED_NGRAMS,
    default_activity,
    default_ngrams,
    default_patches,
)
from tinygrad_ee.tasks.data.layouts import load_activity, load_ngrams, load_patches
from tinygrad_ee.tasks.data.ngrams import build_ngrams_from_python_docs
from tinygrad_ee.tasks.data.preprocessing import preprocess_patches, split_validation
from tinygrad_ee.tasks.files import export_defaults

SMALL = dict(patch_count=64, activity_train=60, activity_test=12, activity_steps=40)


def write_h5(path, **arrays):
    with h5py.File(path, "w") as handle:
        for name, array in arrays.items():
            handle.create_dataset(name, data=array)
    return path


def assert_data_error(load, path, *fragments):
    """load(path) raises DataError whose message names the file and every fragment."""
    with pytest.raises(DataError) as caught:
        load(path)
    message = str(caught.value)
    assert str(path) in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("defaults")
    return folder, export_defaults(folder, **SMALL)


# --- export and round trips ---------------------------------------------------------------


def test_export_writes_the_three_documented_layouts(exported):
    folder, paths = exported
    assert [path.name for path in paths] == ["data1.h5", "data2.h5", "data3.h5"]
    assert sorted(p.name for p in folder.iterdir()) == ["data1.h5", "data2.h5", "data3.h5"]
    with h5py.File(paths[0], "r") as f:
        assert list(f) == ["data"]
        assert f["data"].shape == (64, 3, 16, 16) and f["data"].dtype == np.float32
    with h5py.File(paths[1], "r") as f:
        expected = {"trainx", "traind", "valx", "vald", "testx", "testd", "words"}
        assert set(f) == expected
        assert f["words"].shape == (250,) and f["words"].dtype.kind == "S"
        for name in ("trainx", "valx", "testx"):
            assert f[name].ndim == 2 and f[name].shape[1] == 3
            assert f[name].dtype.kind == "i" and f[name][()].min() == 1  # 1-based
        assert f["traind"][()].max() <= 250
    with h5py.File(paths[2], "r") as f:
        assert set(f) == {"trX", "trY", "tstX", "tstY", "classes"}
        assert f["trX"].shape == (60, 40, 3) and f["tstX"].shape == (12, 40, 3)
        assert f["trY"].shape == (60, 6) and f["trY"].dtype == np.float32
        np.testing.assert_array_equal(f["trY"][()].sum(axis=1), 1)
        assert [c.decode() for c in f["classes"][()]] == list(ACTIVITY_CLASSES)


def test_loaders_read_back_exactly_what_the_defaults_hold(exported):
    _, (data1, data2, data3) = exported
    np.testing.assert_array_equal(load_patches(data1), default_patches(64, seed=0))
    assert load_patches(data1).dtype == np.float32

    ngrams, shipped = load_ngrams(data2), default_ngrams()
    assert ngrams.words == shipped.words
    for split in ("train", "val", "test"):
        for loaded, expected in zip(ngrams.split(split), shipped.split(split)):
            assert loaded.dtype == np.int64
            np.testing.assert_array_equal(loaded, expected)
    assert ngrams.train_context.min() == 0  # converted to 0-based

    activity, expected = load_activity(data3), default_activity(60, 12, 40, seed=0)
    assert activity.class_names == list(ACTIVITY_CLASSES)
    np.testing.assert_array_equal(activity.train_x, expected.train_x)
    np.testing.assert_array_equal(activity.test_y, expected.test_y)
    assert activity.train_x.dtype == np.float32 and activity.train_y.dtype == np.int64


def test_export_replaces_files_atomically_and_a_failed_write_leaves_the_old_file(
    tmp_path, monkeypatch
):
    export_defaults(tmp_path, **SMALL)  # overwriting works
    before = (tmp_path / "data1.h5").read_bytes()
    unwritable = np.array([object()] * 4)  # h5py cannot store Python objects
    monkeypatch.setattr(embedded, "default_patches", lambda count, seed: unwritable)
    with pytest.raises(TypeError):
        export_defaults(tmp_path, **SMALL)
    assert (tmp_path / "data1.h5").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data1.h5", "data2.h5", "data3.h5"]


# --- files that are not usable HDF5 -----------------------------------------------------------


@pytest.mark.parametrize("load", [load_patches, load_ngrams, load_activity])
def test_missing_file(tmp_path, load):
    assert_data_error(load, tmp_path / "absent.h5", "no such file")


@pytest.mark.parametrize("load", [load_patches, load_ngrams, load_activity])
def test_file_that_is_not_hdf5(tmp_path, load):
    path = tmp_path / "notes.h5"
    path.write_text("trainx,traind\n1,2\n")
    assert_data_error(load, path, "not a readable HDF5 file")


@pytest.mark.parametrize("index, load", [(0, load_patches), (1, load_ngrams), (2, load_activity)])
def test_truncated_file(exported, tmp_path, index, load):
    whole = exported[1][index].read_bytes()
    path = tmp_path / "truncated.h5"
    path.write_bytes(whole[: len(whole) // 2])
    assert_data_error(load, path, "truncated")


def test_directory_instead_of_file(tmp_path):
    assert_data_error(load_patches, tmp_path, "not a regular file")


@pytest.mark.parametrize(
    "load, name", [(load_patches, "data"), (load_ngrams, "trainx"), (load_activity, "trX")]
)
def test_a_dataset_with_a_null_dataspace_is_named(tmp_path, load, name):
    path = tmp_path / "null.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset(name, data=h5py.Empty("f4"))  # no shape at all, not even ()
    assert_data_error(load, path, f"dataset '{name}' holds no data", "null")


def test_a_name_too_long_to_look_up_is_a_read_error(tmp_path):
    assert_data_error(load_patches, tmp_path / ("d" * 300 + ".h5"), "cannot be read")


# --- image patches ---------------------------------------------------------------------------


def rgb(shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, shape).astype(np.float32)


@pytest.mark.parametrize(
    "arrays, fragments",
    [
        ({"other": rgb((4, 3, 16, 16))}, ["'data'", "missing", "other"]),
        ({"data": rgb((4, 3, 16))}, ["'data'", "(N, 3, H, W)", "got (4, 3, 16)"]),
        ({"data": rgb((4, 4, 16, 16))}, ["'data'", "3 colour channels", "got (4, 4, 16, 16)"]),
        ({"data": rgb((0, 3, 16, 16))}, ["'data'", "must not be empty", "(0, 3, 16, 16)"]),
        ({"data": np.full((2, 3, 2, 2), b"abc")}, ["'data'", "must hold numbers", "|S3"]),
        ({"data": np.where(np.arange(48).reshape(1, 3, 4, 4) == 7, np.nan, 0.5)}, ["finite"]),
        ({"data": np.full((1, 3, 2, 2), np.inf)}, ["'data'", "finite", "inf"]),
        ({"data": np.full((1, 3, 2, 2), 1e300)}, ["'data'", "too large for float32"]),
    ],
    ids=["missing", "rank", "channels", "empty", "strings", "nan", "inf", "overflow"],
)
def test_bad_patch_files(tmp_path, arrays, fragments):
    path = write_h5(tmp_path / "data1.h5", **arrays)
    assert_data_error(load_patches, path, *fragments)


def test_a_group_where_a_dataset_belongs(tmp_path):
    path = tmp_path / "data1.h5"
    with h5py.File(path, "w") as handle:
        handle.create_group("data")
    assert_data_error(load_patches, path, "'data'", "must be a dataset")


def test_patches_of_any_numeric_dtype_and_size_load_as_float32(tmp_path):
    data = np.arange(2 * 3 * 5 * 7, dtype=np.uint8).reshape(2, 3, 5, 7)
    loaded = load_patches(write_h5(tmp_path / "data1.h5", data=data))
    assert loaded.dtype == np.float32 and loaded.shape == (2, 3, 5, 7)
    np.testing.assert_array_equal(loaded, data)


# --- preprocessing ---------------------------------------------------------------------------


def grey(values):
    """Grey patches: R = G = B, so the luminance equals the value (the weights sum to 1)."""
    values = np.asarray(values, dtype=np.float64)
    return np.repeat(values[:, None], 3, axis=1)


def test_luminance_weights_and_min_max_mapping_by_hand():
    # One 1x4 patch: pure red, pure green, pure blue, black. Y = [0.2126, 0.7152, 0.0722, 0]
    # and s is large enough that nothing is clipped; subtracting the patch mean then
    # min-max normalising gives (Y - 0) / (0.7152 - 0).
    patch = np.zeros((1, 3, 1, 4))
    patch[0, 0, 0, 0] = patch[0, 1, 0, 1] = patch[0, 2, 0, 2] = 1.0
    expected = 0.1 + 0.8 * np.array([0.2126, 0.7152, 0.0722, 0.0]) / 0.7152
    np.testing.assert_allclose(preprocess_patches(patch), [expected], rtol=1e-6)


def test_per_patch_mean_dataset_std_clipping_and_mapping_by_hand():
    # Patch 0: Y = [10, 0 x 9], mean 1 -> [9, -1 x 9]. Patch 1: zeros -> zeros.
    # All 20 mean-removed pixels: mean 0, variance (81 + 9) / 20 = 4.5, s = sqrt(4.5).
    # 9 > 3s = 6.364 is clipped to 3s; min -1, max 3s; n = (y + 1) / (3s + 1).
    first = np.zeros((1, 10))
    first[0, 0] = 10.0
    patches = grey(np.stack([first, np.zeros((1, 10))]))  # (2, 3, 1, 10)
    three_s = 3 * math.sqrt(4.5)
    mapped = lambda y: 0.1 + 0.8 * (y + 1) / (three_s + 1)
    expected = np.array([[mapped(three_s)] + [mapped(-1)] * 9, [mapped(0)] * 10])
    result = preprocess_patches(patches)
    assert result.shape == (2, 10) and result.dtype == np.float32
    np.testing.assert_allclose(result, expected, rtol=1e-6)
    assert result[0, 0] == pytest.approx(0.9) and result[0, 1] == pytest.approx(0.1)


def test_preprocessed_default_patches_are_flat_256_vectors_in_range():
    result = preprocess_patches(default_patches(200, seed=1))
    assert result.shape == (200, 256) and result.dtype == np.float32
    assert result.min() == pytest.approx(0.1) and result.max() == pytest.approx(0.9)


def test_flat_patches_map_to_the_middle_without_warnings():
    np.testing.assert_array_equal(preprocess_patches(grey(np.ones((3, 2, 2)))), 0.5)


def test_preprocess_rejects_a_non_rgb_array():
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        preprocess_patches(np.zeros((2, 16, 16)))


# --- 4-grams ---------------------------------------------------------------------------------

WORDS = np.array([b"the", b"cat", b"sat", b"on", b"mat"])


def ngram_arrays(**changes):
    arrays = {
        "trainx": np.array([[1, 2, 3], [2, 3, 4], [5, 1, 2], [1, 1, 1]], dtype=np.int32),
        "traind": np.array([4, 5, 3, 2], dtype=np.int32),
        "valx": np.array([[1, 2, 3]], dtype=np.int32),
        "vald": np.array([4], dtype=np.int32),
        "testx": np.array([[3, 4, 5], [4, 5, 1]], dtype=np.int32),
        "testd": np.array([1, 2], dtype=np.int32),
        "words": WORDS,
    }
    arrays.update(changes)
    return {name: array for name, array in arrays.items() if array is not None}


def test_ngrams_load_zero_based_with_decoded_words(tmp_path):
    data = load_ngrams(write_h5(tmp_path / "data2.h5", **ngram_arrays()))
    assert data.words == ["the", "cat", "sat", "on", "mat"] and data.vocab_size == 5
    np.testing.assert_array_equal(data.train_context[0], [0, 1, 2])
    np.testing.assert_array_equal(data.test_target, [0, 1])
    assert data.val_context.dtype == np.int64 and data.val_target.dtype == np.int64


def test_ngram_indices_stored_as_whole_floats_are_accepted(tmp_path):
    arrays = ngram_arrays(trainx=ngram_arrays()["trainx"].astype(np.float64))
    data = load_ngrams(write_h5(tmp_path / "data2.h5", **arrays))
    np.testing.assert_array_equal(data.train_context[1], [1, 2, 3])
    assert data.train_context.dtype == np.int64


def test_variable_length_word_strings_are_accepted(tmp_path):
    path = write_h5(tmp_path / "data2.h5", **ngram_arrays(words=None))
    with h5py.File(path, "a") as handle:
        handle.create_dataset(
            "words", data=["the", "cat", "sat", "on", "mat"], dtype=h5py.string_dtype()
        )
    assert load_ngrams(path).words == ["the", "cat", "sat", "on", "mat"]


@pytest.mark.parametrize(
    "changes, fragments",
    [
        ({"testd": None}, ["'testd'", "missing"]),
        ({"trainx": np.ones((4, 4), np.int32)}, ["'trainx' must have shape (N, 3), got (4, 4)"]),
        ({"trainx": np.ones(4, np.int32)}, ["'trainx'", "(N, 3)", "got (4,)"]),
        ({"traind": np.ones((4, 1), np.int32)}, ["'traind'", "(N,)", "got (4, 1)"]),
        ({"traind": np.ones(3, np.int32)}, ["'traind'", "expected 4 rows, got 3"]),
        ({"valx": np.zeros((0, 3), np.int32), "vald": np.zeros(0, np.int32)}, ["'valx'", "empty"]),
        ({"testd": np.array([0, 1])}, ["'testd'", "word index 0", "allowed range 1..5"]),
        ({"testx": np.array([[1, 2, 3], [1, 6, 2]])}, ["'testx'", "word index 6", "1..5"]),
        ({"traind": np.array([4.0, 2.5, 3, 2])}, ["'traind'", "whole-number", "2.5"]),
        ({"vald": np.array([np.nan])}, ["'vald'", "finite", "nan"]),
        ({"valx": np.array([[1.0, np.inf, 2.0]])}, ["'valx'", "finite", "inf"]),
        ({"valx": np.array([[b"a", b"b", b"c"]])}, ["'valx'", "integer word indices", "|S1"]),
        ({"words": np.arange(5)}, ["'words'", "byte strings", "int64"]),
        ({"words": WORDS.reshape(1, 5)}, ["'words'", "1-d", "(1, 5)"]),
    ],
    ids=[
        "missing-dataset",
        "wrong-width",
        "context-rank",
        "target-rank",
        "count-mismatch",
        "empty-split",
        "index-zero",
        "index-above-vocab",
        "fractional-index",
        "nan",
        "inf",
        "string-indices",
        "numeric-words",
        "words-rank",
    ],
)
def test_bad_ngram_files(tmp_path, changes, fragments):
    path = write_h5(tmp_path / "data2.h5", **ngram_arrays(**changes))
    assert_data_error(load_ngrams, path, *fragments)


def test_shipped_ngrams_have_tens_of_thousands_of_training_4grams_over_250_words():
    data = default_ngrams()
    assert data.vocab_size == 250 and len(set(data.words)) == 250
    assert {"the", "a", "of", "return", "function"} <= set(data.words)
    sizes = {split: len(data.split(split)[0]) for split in ("train", "val", "test")}
    assert sizes["train"] >= 20_000
    total = sum(sizes.values())
    assert abs(sizes["val"] - 0.1 * total) <= 1 and abs(sizes["test"] - 0.1 * total) <= 2
    for split in ("train", "val", "test"):
        context, target = data.split(split)
        assert context.shape == (sizes[split], 3) and target.shape == (sizes[split],)
        assert context.min() >= 0 and max(context.max(), target.max()) < 250


def test_shipped_ngram_file_is_small_and_loads_without_pickles():
    path = SHIPPED_NGRAMS
    assert path.stat().st_size < 3_000_000
    with np.load(path, allow_pickle=False) as archive:
        assert archive["words"].dtype.kind == "S"
        assert archive["trainx"].dtype == np.int16 and archive["trainx"].min() == 1


def test_ngram_builder_tokenises_sentences_and_is_deterministic():
    texts = [
        "The cat's hat is red. The cat's hat is blue!\n\nThe dog is red and the cat is blue.",
        ">>> code = is_not(prose)\n\nTHE CAT IS RED TODAY ALL CAPS TABLE ROW",
        "the cat is red; the cat is blue",
    ]
    data = build_ngrams_from_python_docs(vocab_size=6, texts=texts)
    # The code line and the all-capitals paragraph are not prose. Counts: is 6, the 6,
    # blue 3, cat 3, red 3, cat's 2, hat 2, and 1, dog 1; ties go alphabetically.
    assert data.words == ["is", "the", "blue", "cat", "red", "cat's"]
    grams = set()
    for split in ("train", "val", "test"):
        context, target = data.split(split)
        grams |= {tuple(data.words[i] for i in (*c, t)) for c, t in zip(context, target)}
    # "red. The cat's" crosses a sentence end, so it is not a 4-gram; ";" does not end one.
    assert grams == {
        ("the", "cat", "is", "red"),
        ("the", "cat", "is", "blue"),
        ("cat", "is", "red", "the"),
        ("is", "red", "the", "cat"),
        ("red", "the", "cat", "is"),
    }
    again = build_ngrams_from_python_docs(vocab_size=6, texts=texts)
    np.testing.assert_array_equal(again.train_context, data.train_context)


# --- activity --------------------------------------------------------------------------------


def activity_arrays(**changes):
    rng = np.random.default_rng(0)
    arrays = {
        "trX": rng.normal(size=(6, 5, 2)).astype(np.float32),
        "trY": np.eye(3, dtype=np.float32)[[0, 1, 2, 2, 1, 0]],
        "tstX": rng.normal(size=(3, 5, 2)),
        "tstY": np.eye(3)[[2, 0, 1]],
    }
    arrays.update(changes)
    return {name: array for name, array in arrays.items() if array is not None}


def test_activity_of_any_shape_loads_with_class_indices_and_default_names(tmp_path):
    data = load_activity(write_h5(tmp_path / "data3.h5", **activity_arrays()))
    assert data.train_x.shape == (6, 5, 2) and data.test_x.dtype == np.float32
    np.testing.assert_array_equal(data.train_y, [0, 1, 2, 2, 1, 0])
    np.testing.assert_array_equal(data.test_y, [2, 0, 1])
    assert data.class_names == ["class 0", "class 1", "class 2"] and data.num_classes == 3


def test_activity_class_names_come_from_the_classes_dataset(tmp_path):
    arrays = activity_arrays(classes=np.array([b"rest", b"walk", b"run"]))
    assert load_activity(write_h5(tmp_path / "data3.h5", **arrays)).class_names == [
        "rest",
        "walk",
        "run",
    ]


ONE_HOT = np.eye(3)[[0, 1, 2, 2, 1, 0]]


def with_row(row, values):
    labels = ONE_HOT.copy()
    labels[row] = values
    return labels


@pytest.mark.parametrize(
    "changes, fragments",
    [
        ({"tstY": None}, ["'tstY'", "missing"]),
        ({"trX": np.zeros((6, 5))}, ["'trX'", "(N, T, C)", "got (6, 5)"]),
        ({"trY": np.zeros(6)}, ["'trY'", "(N, K)", "got (6,)"]),
        ({"trY": ONE_HOT[:5]}, ["'trY'", "expected 6 rows, got 5"]),
        ({"tstX": np.zeros((3, 4, 2))}, ["'tstX'", "(T, C)", "(5, 2)", "(4, 2)"]),
        ({"tstY": np.eye(4)[[0, 1, 2]]}, ["'tstY'", "K = 3", "got 4"]),
        ({"trY": with_row(3, [0, 1, 1])}, ["'trY'", "one-hot", "row 3 is [0.0, 1.0, 1.0]"]),
        ({"trY": with_row(2, [0, 0, 0])}, ["'trY'", "one-hot", "row 2"]),
        ({"trY": with_row(4, [0, 0.5, 0.5])}, ["'trY'", "one-hot", "row 4"]),
        ({"trY": with_row(1, [2, 0, 0])}, ["'trY'", "one-hot", "row 1"]),
        ({"tstX": np.full((3, 5, 2), np.nan)}, ["'tstX'", "finite", "nan"]),
        ({"trX": np.full((6, 5, 2), -np.inf)}, ["'trX'", "finite", "-inf"]),
        ({"trY": with_row(0, [np.nan, 1, 0])}, ["'trY'", "finite"]),
        ({"trX": np.full((6, 5, 2), b"x")}, ["'trX'", "must hold numbers", "|S1"]),
        ({"classes": np.array([b"a", b"b"])}, ["'classes'", "K = 3", "got 2 names"]),
    ],
    ids=[
        "missing-dataset",
        "x-rank",
        "y-rank",
        "count-mismatch",
        "steps-mismatch",
        "classes-mismatch",
        "two-ones",
        "no-one",
        "fractions",
        "a-two",
        "nan",
        "inf",
        "nan-label",
        "strings",
        "class-names",
    ],
)
def test_bad_activity_files(tmp_path, changes, fragments):
    path = write_h5(tmp_path / "data3.h5", **activity_arrays(**changes))
    assert_data_error(load_activity, path, *fragments)


def test_default_activity_shapes_balance_and_range():
    data = default_activity()
    assert data.train_x.shape == (3000, 150, 3) and data.test_x.shape == (600, 150, 3)
    assert data.train_x.dtype == np.float32
    assert data.class_names == list(ACTIVITY_CLASSES)
    np.testing.assert_array_equal(np.bincount(data.train_y), [500] * 6)
    np.testing.assert_array_equal(np.bincount(data.test_y), [100] * 6)
    assert np.abs(data.train_x).max() < 10  # accelerations in g
    # Postures: the mean reading is gravity, about 1 g; gaits move around it.
    magnitude = np.linalg.norm(data.train_x.mean(axis=1), axis=1)
    standing = data.train_y == ACTIVITY_CLASSES.index("standing")
    assert np.allclose(magnitude[standing], 1.0, atol=0.05)
    jogging = data.train_y == ACTIVITY_CLASSES.index("jogging")
    assert data.train_x[jogging].std(axis=1).mean() > 3 * data.train_x[standing].std(axis=1).mean()


def test_default_activity_is_separable_but_not_from_means_and_stds_alone():
    # Nearest class mean on per-axis [mean, std]: postures and jogging are easy, the
    # stairs and walking differ in the time-asymmetry of each step, which it cannot see.
    data = default_activity(train=600, test=300, steps=100, seed=3)
    features = lambda x: np.concatenate([x.mean(axis=1), x.std(axis=1)], axis=1)
    train, test = features(data.train_x), features(data.test_x)
    centre, scale = train.mean(axis=0), train.std(axis=0)
    train, test = (train - centre) / scale, (test - centre) / scale
    means = np.stack([train[data.train_y == k].mean(axis=0) for k in range(6)])
    predicted = np.argmin(((test[:, None] - means[None]) ** 2).sum(axis=2), axis=1)
    accuracy = np.mean(predicted == data.test_y)
    assert 0.5 < accuracy < 0.9


# --- determinism and the validation split ----------------------------------------------------


def test_default_generators_are_deterministic_per_seed():
    np.testing.assert_array_equal(default_patches(16, seed=5), default_patches(16, seed=5))
    assert not np.array_equal(default_patches(16, seed=5), default_patches(16, seed=6))
    first, again = default_activity(30, 6, 20, seed=1), default_activity(30, 6, 20, seed=1)
    np.testing.assert_array_equal(first.train_x, again.train_x)
    np.testing.assert_array_equal(first.test_y, again.test_y)
    assert not np.array_equal(first.train_x, default_activity(30, 6, 20, seed=2).train_x)
    patches = default_patches(16, seed=0)
    assert patches.shape == (16, 3, 16, 16) and 0 <= patches.min() and patches.max() <= 1


def test_split_validation_holds_out_ten_percent_seeded():
    train, val = split_validation(3000)
    assert len(val) == 300 and len(train) == 2700
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(3000))
    again = split_validation(3000)
    assert np.array_equal(train, again[0]) and np.array_equal(val, again[1])
    assert not np.array_equal(val, split_validation(3000, seed=1)[1])
    assert len(split_validation(5)[1]) == 1  # at least one held out, never all
    with pytest.raises(ValueError, match=re.escape("[0, 1)")):
        split_validation(10, fraction=1.0)
