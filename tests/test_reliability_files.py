"""Untrusted files: data files and checkpoints that are malformed, truncated, of another
kind or hostile raise DataError / CheckpointError naming the file -- never anything
else -- and a refused checkpoint changes nothing."""

from __future__ import annotations

import io
import json
import os
import stat
import warnings
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tinygrad_ee.models import SparseAutoencoder
from tinygrad_ee.tasks import files
from tinygrad_ee.tasks.checkpoint import Checkpoint, read_training_checkpoint
from tinygrad_ee.tasks.data import DataError, load_activity, load_ngrams, load_patches
from tinygrad_ee.tasks.files import CheckpointError, load_model, read_arrays, save_model
from tinygrad_ee.tasks.training import TrainingConfig, TrainingDiverged, fit

import tinygrad_ee as tg
from tinygrad_ee import nn

FEW = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# --- valid files to start from ---------------------------------------------------------------


def valid_patches() -> dict[str, np.ndarray]:
    return {"data": np.random.default_rng(0).uniform(0, 1, (4, 3, 4, 4)).astype(np.float32)}


def valid_ngrams() -> dict[str, np.ndarray]:
    return {
        "trainx": np.array([[1, 2, 3], [2, 3, 4], [5, 1, 2]], dtype=np.int32),
        "traind": np.array([4, 5, 3], dtype=np.int32),
        "valx": np.array([[1, 2, 3]], dtype=np.int32),
        "vald": np.array([4], dtype=np.int32),
        "testx": np.array([[3, 4, 5]], dtype=np.int32),
        "testd": np.array([1], dtype=np.int32),
        "words": np.array([b"the", b"cat", b"sat", b"on", b"mat"]),
    }


def valid_activity() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "trX": rng.normal(size=(6, 5, 2)).astype(np.float32),
        "trY": np.eye(3, dtype=np.float32)[[0, 1, 2, 2, 1, 0]],
        "tstX": rng.normal(size=(3, 5, 2)),
        "tstY": np.eye(3)[[2, 0, 1]],
        "classes": np.array([b"a", b"b", b"c"]),
    }


LOADERS = {
    "patches": (load_patches, valid_patches),
    "ngrams": (load_ngrams, valid_ngrams),
    "activity": (load_activity, valid_activity),
}


def write_h5(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    with h5py.File(path, "w") as handle:
        for name, array in arrays.items():
            if array.dtype.kind == "U":  # h5py stores text as variable-length strings
                handle.create_dataset(name, data=array.tolist(), dtype=h5py.string_dtype())
            else:
                handle.create_dataset(name, data=array)
    return path


def loads_or_data_error(load, path: Path) -> None:
    """The documented contract: a result, or a DataError whose message names the file."""
    try:
        load(path)
    except DataError as error:
        assert str(path) in str(error)


# --- data files: random malformations of valid files ------------------------------------------

DTYPES = st.sampled_from(
    ["int8", "uint8", "int64", "float16", "float32", "float64", "bool", "complex64", "S3", "U3"]
)
SHAPES = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)
RANDOM_ARRAYS = st.tuples(DTYPES, SHAPES).flatmap(lambda ds: hnp.arrays(ds[0], ds[1]))


@st.composite
def mutated(draw, base: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A valid file's arrays after 1 to 3 random changes."""
    arrays = dict(base)
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(sorted(arrays) + ["extra"]))
        change = draw(
            st.sampled_from(["delete", "random", "astype", "nan", "inf", "empty", "reshape"])
        )
        old = arrays.get(name, np.zeros(3))
        if change == "delete":
            arrays.pop(name, None)
        elif change == "random":
            arrays[name] = draw(RANDOM_ARRAYS)
        elif change == "astype":
            dtype = draw(DTYPES)
            try:
                with warnings.catch_warnings(), np.errstate(all="ignore"):
                    warnings.simplefilter("ignore")  # complex -> real, nan -> int, ...
                    arrays[name] = old.astype(dtype)
            except (TypeError, ValueError):
                arrays[name] = draw(RANDOM_ARRAYS)
        elif change in ("nan", "inf") and old.size and old.dtype.kind in "fiu":
            new = old.astype(np.float64)
            new.flat[draw(st.integers(0, old.size - 1))] = np.nan if change == "nan" else -np.inf
            arrays[name] = new
        elif change == "empty" and old.ndim:
            axis = draw(st.integers(0, old.ndim - 1))
            arrays[name] = np.take(old, [], axis=axis)
        elif change == "reshape":
            arrays[name] = old.reshape(-1) if old.ndim != 1 else old.reshape(1, -1)
    return arrays


@pytest.mark.parametrize("kind", sorted(LOADERS))
@FEW
@given(data=st.data())
def test_malformed_data_files_raise_data_error_only(tmp_path, kind, data):
    load, valid = LOADERS[kind]
    arrays = data.draw(mutated(valid()))
    path = write_h5(tmp_path / f"{kind}.h5", arrays)
    loads_or_data_error(load, path)


@pytest.mark.parametrize("kind", sorted(LOADERS))
@FEW
@given(content=st.binary(max_size=600), hdf5_signature=st.booleans())
def test_random_bytes_as_data_file_raise_data_error(tmp_path, kind, content, hdf5_signature):
    path = tmp_path / "random.h5"
    path.write_bytes((b"\x89HDF\r\n\x1a\n" if hdf5_signature else b"") + content)
    with pytest.raises(DataError, match="random.h5"):
        LOADERS[kind][0](path)


@pytest.mark.parametrize("kind", sorted(LOADERS))
@FEW
@given(fraction=st.floats(0.0, 0.999))
def test_truncated_data_files_raise_data_error(tmp_path, kind, fraction):
    load, valid = LOADERS[kind]
    whole = write_h5(tmp_path / "whole.h5", valid()).read_bytes()
    path = tmp_path / "cut.h5"
    path.write_bytes(whole[: int(fraction * len(whole))])
    loads_or_data_error(load, path)


def test_a_data_file_linking_to_another_file_is_refused(tmp_path):
    target = write_h5(tmp_path / "elsewhere.h5", valid_patches())
    path = tmp_path / "data1.h5"
    with h5py.File(path, "w") as handle:
        handle["data"] = h5py.ExternalLink(str(target), "data")
    with pytest.raises(DataError, match="link to another file"):
        load_patches(path)


def test_a_huge_declared_dataset_is_refused_before_reading(tmp_path):
    path = tmp_path / "data1.h5"
    with h5py.File(path, "w") as handle:  # a few KB on disk, 80 GB declared
        handle.create_dataset("data", shape=(10**7, 3, 16, 16), dtype="float64", chunks=True)
    with pytest.raises(DataError, match="more than"):
        load_patches(path)


# --- checkpoints: small model, valid files ----------------------------------------------------


def small_model(hidden: int = 3) -> SparseAutoencoder:
    nn.seed(0)
    return SparseAutoencoder(8, hidden)


def params_of(model) -> dict[str, np.ndarray]:
    return {name: value.copy() for name, value in model.state_dict().items()}


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert np.array_equal(a[name], b[name]), name


def train_small(path: Path, epochs: int = 2, resume: bool = False, model=None, lr: float = 0.05):
    """An in-process training run of a tiny autoencoder with a checkpoint at ``path``."""
    model = model or small_model()
    x = np.random.default_rng(1).uniform(0.1, 0.9, (40, 8)).astype(np.float32)
    data = tg.Tensor(x)
    history = fit(
        model,
        lambda idx, key: model.loss(data[idx], 1e-4, 0.5, 0.1),
        len(x),
        TrainingConfig(epochs=epochs, batch_size=16, lr=lr, momentum=0.5, progress=False),
        np.random.default_rng(0),
        "small",
        checkpoint=Checkpoint(path, {"experiment": "test", "hidden": 3}, resume=resume),
    )
    return model, history


@pytest.fixture(scope="module")
def training_checkpoint(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("ckpt") / "run.npz"
    train_small(path, epochs=1)
    return path.read_bytes()


def all_readers_refuse(path: Path) -> None:
    """read_arrays, load_model and read_training_checkpoint: CheckpointError or success."""
    for reader in (
        read_arrays,
        read_training_checkpoint,
        lambda p: load_model(p, small_model()),
    ):
        try:
            reader(path)
        except CheckpointError as error:
            assert str(path) in str(error)


@FEW
@given(content=st.binary(max_size=800), prefix=st.sampled_from([b"", b"PK\x03\x04", b"\x93NUMPY"]))
def test_random_bytes_as_checkpoint_raise_checkpoint_error(tmp_path, content, prefix):
    path = tmp_path / "random.npz"
    path.write_bytes(prefix + content)
    for reader in (read_arrays, read_training_checkpoint):
        with pytest.raises(CheckpointError, match="random.npz"):
            reader(path)


@FEW
@given(fraction=st.floats(0.0, 0.999))
def test_truncated_checkpoints_raise_checkpoint_error(tmp_path, training_checkpoint, fraction):
    path = tmp_path / "cut.npz"
    path.write_bytes(training_checkpoint[: int(fraction * len(training_checkpoint))])
    for reader in (read_arrays, read_training_checkpoint):
        with pytest.raises(CheckpointError, match="cut.npz"):
            reader(path)


@FEW
@given(
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=4)
)
def test_corrupted_checkpoints_raise_checkpoint_error_or_load(tmp_path, training_checkpoint, flips):
    content = bytearray(training_checkpoint)
    for position, xor in flips:
        content[position % len(content)] ^= xor
    path = tmp_path / "flipped.npz"
    path.write_bytes(bytes(content))
    all_readers_refuse(path)


NAMES = st.sampled_from(
    ["meta", "model/encoder.weight", "model/encoder.bias", "optimizer/lr", "x", "model/"]
)


@FEW
@given(arrays=st.dictionaries(NAMES, RANDOM_ARRAYS, max_size=4))
def test_npz_files_of_random_arrays_raise_checkpoint_error_or_load(tmp_path, arrays):
    path = tmp_path / "arrays.npz"
    np.savez(path, **arrays)
    all_readers_refuse(path)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


@FEW
@given(data=st.data())
def test_checkpoints_with_malformed_meta_are_refused_and_change_nothing(
    tmp_path, training_checkpoint, data
):
    source = tmp_path / "source.npz"
    source.write_bytes(training_checkpoint)
    with zipfile.ZipFile(source) as archive:
        arrays = {n[:-4]: np.lib.format.read_array(archive.open(n)) for n in archive.namelist()}
    meta = json.loads(str(arrays["meta"]))
    where = data.draw(st.sampled_from(sorted(meta) + [f"history.{k}" for k in meta["history"]]))
    value = data.draw(JSON)
    if where.startswith("history."):
        meta["history"][where[len("history.") :]] = value
    else:
        meta[where] = value
    arrays["meta"] = np.array(json.dumps(meta))
    path = tmp_path / "run.npz"
    np.savez(path, **arrays)
    model = small_model()
    before = params_of(model)
    try:
        train_small(path, epochs=3, resume=True, model=model)
    except CheckpointError as error:
        assert str(path) in str(error)
        assert_same(params_of(model), before)


# --- checkpoints of the wrong kind, hostile checkpoints ------------------------------------------


def write_npy(path: Path) -> None:
    with open(path, "wb") as file:
        np.save(file, np.ones(3))


def test_files_of_other_kinds_are_refused_by_name(tmp_path):
    cases = {
        "data1.h5": ("an HDF5 file", lambda p: write_h5(p, valid_patches())),
        "notes.npz": ("a text file", lambda p: p.write_text("weights: 1 2 3\n")),
        "array.npz": ("a single-array .npy file", write_npy),
        "empty.npz": ("an empty file", lambda p: p.write_bytes(b"")),
    }
    for name, (kind, make) in cases.items():
        path = tmp_path / name
        make(path)
        with pytest.raises(CheckpointError) as caught:
            load_model(path, small_model())
        assert str(path) in str(caught.value) and kind in str(caught.value)
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        read_arrays(tmp_path / "absent.npz")
    with pytest.raises(CheckpointError, match="not a regular file"):
        read_arrays(tmp_path)


def test_an_npz_of_other_arrays_is_refused_and_the_model_is_unchanged(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, weights=np.ones((8, 3)), bias=np.zeros(3))
    model = small_model()
    before = params_of(model)
    with pytest.raises(CheckpointError, match="other.npz.*does not fit the model"):
        load_model(path, model)
    assert_same(params_of(model), before)
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        read_training_checkpoint(path)


def test_a_checkpoint_of_another_shape_is_refused_naming_the_key_and_shapes(tmp_path):
    path = tmp_path / "wide.npz"
    save_model(path, small_model(hidden=5))
    model = small_model(hidden=3)
    before = params_of(model)
    with pytest.raises(CheckpointError) as caught:
        load_model(path, model)
    message = str(caught.value)
    assert "wide.npz" in message and "encoder.weight" in message and "(8, 5)" in message
    assert_same(params_of(model), before)  # nothing half-loaded


def test_a_checkpoint_holding_nan_is_refused(tmp_path):
    path = tmp_path / "nan.npz"
    state = small_model().state_dict()
    name = next(iter(state))
    state[name][0] = np.nan
    np.savez(path, **state)
    model = small_model()
    before = params_of(model)
    with pytest.raises(CheckpointError, match=f"nan.npz.*{name}.*NaN"):
        load_model(path, model)
    assert_same(params_of(model), before)


def test_a_value_the_models_dtype_cannot_hold_is_refused(tmp_path):
    path = tmp_path / "big.npz"
    state = {name: value.astype(np.float64) for name, value in small_model().state_dict().items()}
    state["decoder.bias"][1] = -1e300  # finite in float64, -inf in the model's float32
    np.savez(path, **state)
    model = small_model()
    before = params_of(model)
    with pytest.raises(CheckpointError) as caught:
        load_model(path, model)
    message = str(caught.value)
    assert "big.npz" in message and "'decoder.bias' holds -1e+300 at index (1,)" in message
    assert "float32" in message
    assert_same(params_of(model), before)
    nn.seed(0)
    wide = SparseAutoencoder(8, 3, dtype="float64")
    assert load_model(path, wide) is wide  # float64 holds it
    assert wide.decoder.bias.numpy()[1] == -1e300


def test_finite_losses_whose_sum_overflows_are_a_divergence_and_write_nothing(tmp_path):
    nn.seed(0)
    model = SparseAutoencoder(8, 3, dtype="float64")
    x = tg.Tensor(np.random.default_rng(1).uniform(0.1, 0.9, (40, 8)))  # float64
    path = tmp_path / "run.npz"
    overflowed = "summed training loss overflowed at epoch 1, batch 2"
    with pytest.raises(TrainingDiverged, match=overflowed):
        fit(  # each batch loss is about 1e307 (a constant: gradients unchanged), 16 per batch
            model,
            lambda idx, key: model.loss(x[idx], 1e-4, 0.5, 0.1) + 1e307,
            40,
            TrainingConfig(epochs=1, batch_size=16, lr=0.05, momentum=0.5, progress=False),
            np.random.default_rng(0),
            "small",
            checkpoint=Checkpoint(path, {"experiment": "test"}),
        )
    assert not path.exists()


def test_a_checkpoint_stopped_early_but_not_done_is_refused(tmp_path):
    path = tmp_path / "run.npz"
    train_small(path, epochs=1)
    arrays = read_arrays(path)
    meta = json.loads(str(arrays["meta"]))
    meta["history"]["stopped_early"], meta["done"] = True, False
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match="run.npz: history 'stopped_early' is true but"):
        read_training_checkpoint(path)


class Payload:
    """Unpickling this creates the marker file: proof that a pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def pickle_bomb(path: Path, marker: Path, name: str = "encoder.weight") -> Path:
    np.savez(path, **{name: np.array([Payload(marker)], dtype=object)})
    return path


def test_a_pickled_object_in_a_checkpoint_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = pickle_bomb(tmp_path / "bomb.npz", marker)
    for reader in (read_arrays, read_training_checkpoint, lambda p: load_model(p, small_model())):
        with pytest.raises(CheckpointError) as caught:
            reader(path)
        assert "bomb.npz" in str(caught.value) and "'encoder.weight'" in str(caught.value)
        assert "Python objects" in str(caught.value)
    assert not marker.exists(), "the pickle was executed"
    # The payload is real: NumPy with pickles allowed does run it.
    with np.load(path, allow_pickle=True) as archive:
        archive["encoder.weight"]
    assert marker.exists()


@pytest.mark.parametrize("declared", [2 * 10**8, 10**13], ids=["1.6 GB", "80 TB"])
def test_an_entry_declaring_more_than_it_holds_is_refused(tmp_path, declared):
    # 64 bytes of data under a header declaring `declared` float64 values: read as far as
    # the data goes (80 TB cannot even be reserved), never a MemoryError or a model.
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (declared,)}
    )
    path = tmp_path / "liar.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("encoder.weight.npy", header.getvalue() + bytes(64))
    for reader in (read_arrays, read_training_checkpoint, lambda p: load_model(p, small_model())):
        with pytest.raises(CheckpointError, match="liar.npz"):
            reader(path)


def test_a_refused_resume_changes_nothing(tmp_path):
    path = tmp_path / "run.npz"
    train_small(path, epochs=1)
    with zipfile.ZipFile(path) as archive:
        arrays = {n[:-4]: np.lib.format.read_array(archive.open(n)) for n in archive.namelist()}
    arrays["optimizer/velocity.1"] = np.zeros(7)  # the wrong shape: found after the model
    np.savez(path, **arrays)
    model = small_model()
    before = params_of(model)
    with pytest.raises(CheckpointError, match="velocity.1"):
        train_small(path, epochs=2, resume=True, model=model)
    assert_same(params_of(model), before)


def test_a_checkpoint_of_another_run_is_refused_naming_the_key(tmp_path):
    path = tmp_path / "run.npz"
    train_small(path, epochs=1)
    model = small_model()
    before = params_of(model)
    with pytest.raises(CheckpointError, match="different run.*hidden: 3 in the checkpoint, 4 now"):
        fit(
            model,
            lambda idx, key: None,
            40,
            TrainingConfig(epochs=2, batch_size=16, lr=0.05, momentum=0.5, progress=False),
            np.random.default_rng(0),
            "small",
            checkpoint=Checkpoint(path, {"experiment": "test", "hidden": 4}, resume=True),
        )
    assert_same(params_of(model), before)


# --- atomic writes ------------------------------------------------------------------------------


def test_a_checkpoint_write_interrupted_before_the_rename_keeps_the_previous_one(
    tmp_path, monkeypatch
):
    path = tmp_path / "run.npz"
    train_small(path, epochs=1)
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="No space left"):
        train_small(path, epochs=2, resume=True)
    monkeypatch.undo()
    assert path.read_bytes() == before
    meta, _ = read_training_checkpoint(path)
    assert meta["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.npz"], "a temporary file was left"


def test_json_is_strict_with_null_for_numbers_that_are_not_finite(tmp_path):
    path = tmp_path / "metrics.json"
    files.write_json(
        path,
        {
            "loss": float("nan"),
            "per_epoch": [1.5, float("inf"), np.float32(-np.inf), np.float64(2.0)],
            "array": np.array([[np.nan, 1.0]]),
            "nested": {"value": (np.int64(3), True, None, Path("a/b"))},
        },
    )

    def refuse(constant):
        raise AssertionError(f"{constant} in {path}")

    assert json.loads(path.read_text(), parse_constant=refuse) == {
        "loss": None,
        "per_epoch": [1.5, None, None, 2.0],
        "array": [[None, 1.0]],
        "nested": {"value": [3, True, None, "a/b"]},
    }
    with pytest.raises(TypeError, match="cannot write object"):
        files.write_json(tmp_path / "other.json", {"x": object()})
    assert not (tmp_path / "other.json").exists()


def test_a_failed_write_names_the_file_it_was_writing(tmp_path, monkeypatch):
    def full(descriptor):
        raise OSError(28, "No space left on device")  # as a full disk reports it: no file

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as caught:
        files.write_text(tmp_path / "report.md", "text")
    assert caught.value.filename == str(tmp_path / "report.md")
    assert caught.value.strerror == "No space left on device"
    assert not list(tmp_path.iterdir())


def test_atomic_writes_fsync_the_file_and_the_folder(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(descriptor):
        synced.append(os.fstat(descriptor).st_mode)
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    files.write_text(tmp_path / "a.txt", "hello")
    assert [stat.S_ISREG(m) for m in synced] == [True, False]  # the file, then its folder
    assert stat.S_ISDIR(synced[1])
    assert (tmp_path / "a.txt").read_text() == "hello"
