"""Backends and devices: device strings, clear errors, scatter-add, host copies."""

import sys
import types

import numpy as np
import pytest

import tinygrad_ee as tg
from tinygrad_ee import backend as backend_module


def test_device_strings_name_one_shared_backend():
    assert tg.get_backend("cpu") is tg.get_backend("cpu")
    assert tg.get_backend("strict") is tg.get_backend("strict:CPU_DEVICE")
    assert tg.Tensor([1.0], device="strict:device1").device == "strict:device1"


@pytest.mark.parametrize("device", ["gpu", "cpu:1", "cuda:x", "tpu:0"])
def test_unknown_device_strings_are_named_in_the_error(device):
    with pytest.raises(tg.DeviceError, match=f"unknown device '{device}'"):
        tg.get_backend(device)


def test_mixing_devices_in_one_op_names_both():
    a = tg.Tensor([1.0, 2.0], device="strict")
    b = tg.Tensor([1.0, 2.0], device="strict:device1")
    with pytest.raises(
        tg.DeviceError, match="mul: tensors on different devices, strict and strict:device1"
    ):
        a * b
    with pytest.raises(tg.DeviceError, match="cpu and strict"):
        tg.Tensor([1.0]) + a


@pytest.fixture
def fresh_backends(monkeypatch):
    monkeypatch.setattr(backend_module, "_BACKENDS", {})


def test_cuda_without_cupy_says_how_to_install_it(fresh_backends, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` fail
    with pytest.raises(
        tg.DeviceError,
        match=r"needs CuPy, which is not installed: pip install 'tinygrad-ee\[cuda\]'",
    ):
        tg.get_backend("cuda")


def test_cuda_without_a_gpu_says_so(fresh_backends, monkeypatch):
    runtime = types.SimpleNamespace(getDeviceCount=lambda: 0)
    fake_cupy = types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime))
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    with pytest.raises(tg.DeviceError, match="CuPy is installed but no CUDA GPU is visible"):
        tg.get_backend("cuda:0")

    def no_driver():
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    runtime.getDeviceCount = no_driver
    with pytest.raises(tg.DeviceError, match="no CUDA GPU is visible .*cudaErrorNoDevice"):
        tg.get_backend("cuda:1")


def test_cupy_namespace_fills_the_array_api_names_cupy_may_lack():
    # Any module with NumPy's classic names stands in for CuPy here.
    legacy = types.SimpleNamespace(
        concatenate=np.concatenate, transpose=np.transpose, power=np.power, swapaxes=np.swapaxes
    )
    xp = backend_module._cupy_namespace(legacy)
    a = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(xp.concat([a, a], axis=0), np.concatenate([a, a]))
    np.testing.assert_array_equal(xp.permute_dims(a, (1, 0)), a.T)
    np.testing.assert_array_equal(xp.matrix_transpose(a[None]), a.T[None])
    np.testing.assert_array_equal(xp.pow(a, 2), a**2)
    assert xp.astype(a, np.float32).dtype == np.float32


@pytest.mark.parametrize("name", ["cpu", "strict"])
def test_scatter_add_adds_repeated_indices(name):
    backend = tg.get_backend(name)
    indices = np.array([2, 0, 2, 2])
    values = np.arange(8.0).reshape(4, 2)
    expected = np.zeros((3, 2))
    for row, value in zip(indices, values):  # the definition, one row at a time
        expected[row] += value
    out = backend.scatter_add((3, 2), backend.asarray(indices), backend.asarray(values))
    np.testing.assert_array_equal(backend.to_host(out), expected)
    generic = tg.Backend.scatter_add(
        backend, (3, 2), backend.asarray(indices), backend.asarray(values)
    )
    np.testing.assert_array_equal(backend.to_host(generic), expected)


def test_random_numbers_are_seeded_and_the_same_on_every_backend():
    draws = []
    for name in ["cpu", "strict"]:
        backend = tg.get_backend(name)
        backend.seed(7)
        draws.append(backend.to_host(backend.uniform((3,), -1.0, 1.0, backend.xp.float64)))
    np.testing.assert_array_equal(draws[0], draws[1])
    assert np.all(np.abs(draws[0]) <= 1.0)


def test_tensor_basics(device):
    x = tg.Tensor([[1.0, 2.0]], device=device)
    assert x.shape == (1, 2) and x.ndim == 2 and x.size == 2 and len(x) == 1
    assert str(x.dtype).endswith("float32"), "Python floats default to float32"
    assert str(tg.Tensor([1, 2], device=device).dtype).endswith("int64")
    assert str(tg.Tensor(np.zeros(2), device=device).dtype).endswith("float64"), "arrays keep dtype"
    host = x.numpy()
    host[0, 0] = 99.0
    assert x.numpy()[0, 0] == 1.0, "numpy() returns a copy"
    assert x.sum().item() == 3.0
    assert "Tensor(" in repr(x) and device in repr(x)
    moved = x.to("cpu")
    assert moved.device == "cpu" and moved.numpy().tolist() == [[1.0, 2.0]]
    with pytest.raises(ValueError, match="ambiguous"):
        bool(x)
