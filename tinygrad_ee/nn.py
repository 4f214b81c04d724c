"""Building blocks for models: parameters, modules, layers, initialisers and losses.

Everything here is a composition of engine ops: no function in this module has a
hand-written derivative, so the engine derives every gradient (and gradcheck can
hold each of them against finite differences).

A model is a `Module` whose attributes are `Parameter`s, `Buffer`s (saved state
that is not trained, such as input statistics), other Modules, or lists of them.
Its parameters are found by walking those attributes in the order they were
assigned:

    >>> import tinygrad_ee as tg
    >>> from tinygrad_ee import nn
    >>> class TwoLayers(nn.Module):
    ...     def __init__(self):
    ...         self.hidden = nn.Linear(4, 8)
    ...         self.out = nn.Linear(8, 2)
    ...     def forward(self, x):
    ...         return self.out(self.hidden(x).sigmoid())
    >>> [name for name, _ in TwoLayers().named_parameters()]
    ['hidden.weight', 'hidden.bias', 'out.weight', 'out.bias']
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np  # host copies for state dicts only, never tensor data

from . import ops
from .backend import Backend, dtype_name, get_backend
from .tensor import Tensor

# --- parameters and modules -------------------------------------------------------------


class Parameter(Tensor):
    """A Tensor that a `Module` owns and an optimiser updates: it always requires grad.

    ``Parameter(data, device=None, dtype=None)`` takes the same data as `Tensor`
    (a scalar, nested list, array or Tensor; Python floats become float32).
    """

    __slots__ = ()

    def __init__(self, data: Any, device: str | Backend | None = None, dtype: Any = None) -> None:
        super().__init__(data, requires_grad=True, device=device, dtype=dtype)


class Buffer(Tensor):
    """A Tensor that a `Module` saves and loads with its parameters but never trains:
    state computed from data (an input mean and standard deviation), not learned.

    `Module.state_dict` and `load_state_dict` include buffers (checked like
    parameters), and `Module.to` moves them; `parameters()`, and so the optimisers
    built on it, never see them, and they never require a gradient, so none flows
    into them. ``Buffer(data, device=None, dtype=None)`` takes `Tensor`'s data.
    """

    __slots__ = ()

    def __init__(self, data: Any, device: str | Backend | None = None, dtype: Any = None) -> None:
        super().__init__(data, requires_grad=False, device=device, dtype=dtype)


_structure = [0]  # bumped whenever a Module gets a Parameter, a sub-Module or a list


def structure_version() -> int:
    """A number that changes whenever any Module gains or replaces a Parameter or a
    sub-Module (compiled steps retrace then: their program names the old tensors)."""
    return _structure[0]


class Module:
    """A model or layer: holds Parameters and sub-Modules, and computes ``forward``.

    Parameters are discovered from the instance's attributes in the order they were
    assigned: a `Parameter`, a sub-`Module` (recursively), or a list/tuple of
    Parameters or Modules. `Buffer`s are found the same way (`named_buffers`). Plain
    Tensors are constants: neither trained nor saved. A Parameter or Buffer reachable
    twice (shared weights) is listed once, under its first name.

    Subclasses need no ``super().__init__()``; they define ``forward``, and calling
    the module calls it.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, (Tensor, Module, list, tuple)):
            _structure[0] += 1
        object.__setattr__(self, name, value)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # --- finding parameters and buffers -------------------------------------------
    def named_parameters(self) -> list[tuple[str, Parameter]]:
        """``(dotted name, parameter)`` pairs, e.g. ``("layers.0.bias", p)``, in
        attribute order."""
        return list(self._walk(Parameter, prefix="", seen_tensors=set(), seen_modules=set()))

    def parameters(self) -> list[Parameter]:
        """The parameters, in the order of `named_parameters`."""
        return [parameter for _, parameter in self.named_parameters()]

    def named_buffers(self) -> list[tuple[str, Buffer]]:
        """``(dotted name, buffer)`` pairs, in attribute order, as `named_parameters`."""
        return list(self._walk(Buffer, prefix="", seen_tensors=set(), seen_modules=set()))

    def _walk(
        self, kind: type, prefix: str, seen_tensors: set[int], seen_modules: set[int]
    ) -> Iterator[tuple[str, Any]]:
        """The tensors of class ``kind`` (Parameter or Buffer) below this module."""
        # Sets of ids, not of tensors: Tensor's == is elementwise.
        if id(self) in seen_modules:  # a module shared by two parents, or a cycle
            return
        seen_modules.add(id(self))
        for attribute, value in vars(self).items():
            items = enumerate(value) if isinstance(value, (list, tuple)) else [(None, value)]
            for position, item in items:
                name = prefix + attribute + ("" if position is None else f".{position}")
                if isinstance(item, kind):
                    if id(item) not in seen_tensors:
                        seen_tensors.add(id(item))
                        yield name, item
                elif isinstance(item, Module):
                    yield from item._walk(kind, name + ".", seen_tensors, seen_modules)

    # --- gradients and devices --------------------------------------------------------
    def zero_grad(self) -> None:
        """Forget every parameter's gradient (``.grad = None``)."""
        for parameter in self.parameters():
            parameter.grad = None

    def to(self, device: str | Backend) -> Module:
        """Move every parameter (and its gradient) and buffer to ``device`` in place;
        returns self.

        The Parameter objects stay the same, so an optimiser built on them keeps
        working, as long as its own state is on the same device (build it after).
        """
        backend = get_backend(device)
        for tensor in self._saved().values():
            if tensor.backend is backend:
                continue
            tensor.data = backend.asarray(tensor.numpy())
            tensor.backend = backend
            if tensor.grad is not None:
                tensor.grad = tensor.grad.to(backend)
        return self

    # --- saving and loading -------------------------------------------------------
    def _saved(self) -> dict[str, Tensor]:
        """What `state_dict` saves: the parameters, then the buffers, by name."""
        return {**dict(self.named_parameters()), **dict(self.named_buffers())}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameter and buffer name -> a NumPy copy of its values (on the host)."""
        return {name: tensor.numpy() for name, tensor in self._saved().items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Copy values from ``state`` (name -> array) into the parameters and buffers.

        Everything is checked first: the keys must be exactly the parameter and buffer
        names, each value numeric (integers or floats) with the tensor's shape and
        finite once converted to its dtype (no NaN or infinity, and nothing float32
        cannot hold, such as 1e300, into a float32 parameter), and whatever
        `state_problems` adds. If anything is wrong, a ValueError lists every problem
        and nothing is changed. Values are copied, converted to the tensor's dtype,
        onto its device.
        """
        tensors = self._saved()
        problems = _key_problems(expected=tensors, given=state)
        host_values = {}
        for name, tensor in tensors.items():
            if name not in state:
                continue
            value, problem = _host_array(name, state[name], tensor.shape, tensor.dtype)
            if problem:
                problems.append(problem)
            else:
                host_values[name] = value
        if not problems:
            problems = self.state_problems(host_values)
        if problems:
            raise ValueError("load_state_dict: " + "; ".join(problems))
        for name, tensor in tensors.items():
            tensor.data = tensor.backend.asarray(host_values[name], dtype=tensor.dtype)

    def state_problems(self, values: Mapping[str, np.ndarray]) -> list[str]:
        """What is wrong with values of the right keys, shapes and dtypes (name ->
        NumPy array) that `load_state_dict` is about to load: a message per problem.
        None here; a model overrides it for values that cannot make sense (a standard
        deviation that is not positive)."""
        return []


def _key_problems(expected: Mapping[str, Any], given: Mapping[str, Any]) -> list[str]:
    """Messages for keys that are missing from ``given`` or that it should not have."""
    problems = []
    missing = [key for key in expected if key not in given]
    unexpected = [key for key in given if key not in expected]
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    return problems


def _host_array(
    key: str, value: Any, expected_shape: tuple[int, ...], dtype: Any
) -> tuple[np.ndarray | None, str | None]:
    """``value`` as a fresh NumPy array of ``dtype`` (a tensor's dtype, on any backend),
    or a message saying why it cannot be used: not numbers, the wrong shape, a value
    that is not finite once in ``dtype`` (NaN, infinity, or out of its range, as 1e300
    is for float32: checked after the cast, which would make it infinity), or an integer
    beyond those a float ``dtype`` holds exactly (2**24 for float32, 2**53 for float64:
    2**62 is no weight a float32 run made).

    A copy, so that changing the caller's array later cannot change a parameter.
    """
    if isinstance(value, Tensor):
        value = value.numpy()
    try:
        array = np.array(value, copy=True)
    except (TypeError, ValueError) as error:
        return None, f"{key!r} is not an array ({error})"
    if array.dtype.kind not in "iuf":  # complex, bool, strings and objects are refused
        return None, f"{key!r} has dtype {array.dtype}, expected integers or floats"
    if array.shape != tuple(expected_shape):
        return (
            None,
            f"{key!r} has the wrong shape: expected {tuple(expected_shape)}, got {array.shape}",
        )
    target = np.dtype(dtype_name(dtype))
    if array.dtype.kind in "iu" and target.kind == "f":
        exact = 2 ** (np.finfo(target).nmant + 1)  # every integer up to it is a value of target
        if (beyond := (array > exact) | (array < -exact)).any():
            where = tuple(int(i) for i in np.argwhere(beyond)[0])
            return None, (
                f"{key!r} holds the integer {array[where].item()} at index {where}, beyond "
                f"the integers {target} holds exactly (up to 2**{np.finfo(target).nmant + 1})"
            )
    with np.errstate(over="ignore", invalid="ignore"):  # found just below, by the key
        cast = array.astype(target)
    if target.kind == "f" and not np.isfinite(cast).all():
        where = np.unravel_index(int(np.argmin(np.isfinite(cast))), cast.shape)
        return None, (
            f"{key!r} holds {array[where].item()!r} at index {tuple(int(i) for i in where)}, "
            f"which is not a finite {target} value (saved state must be)"
        )
    return cast, None


# --- initialisers -----------------------------------------------------------------------
# All draw from the backend's seeded generator: ``seed(s, device)`` makes a run
# reproducible, and a seed gives the same numbers on every device.


def seed(seed: int, device: str | Backend = "cpu") -> None:
    """Reset the random generator that the initialisers on ``device`` draw from."""
    get_backend(device).seed(seed)


def uniform(
    shape: tuple[int, ...],
    bound: float,
    device: str | Backend = "cpu",
    dtype: Any = "float32",
) -> Parameter:
    """A Parameter of ``shape`` drawn uniformly from [-bound, bound]."""
    backend = get_backend(device)
    values = backend.uniform(tuple(shape), -bound, bound, backend.dtype(dtype))
    return Parameter(values, device=backend)


def normal(
    shape: tuple[int, ...],
    std: float,
    device: str | Backend = "cpu",
    dtype: Any = "float32",
) -> Parameter:
    """A Parameter of ``shape`` drawn from N(0, std^2)."""
    backend = get_backend(device)
    return Parameter(backend.normal(tuple(shape), std, backend.dtype(dtype)), device=backend)


def orthogonal(
    shape: tuple[int, int],
    gain: float = 1.0,
    device: str | Backend = "cpu",
    dtype: Any = "float32",
) -> Parameter:
    """A Parameter of ``shape`` (rows, cols), ``gain`` times a random matrix with
    orthonormal columns (rows >= cols: W^T W = I) or rows (rows < cols: W W^T = I).

    A standard normal matrix A (rows, cols) is drawn, and A (or A^T when rows < cols)
    is factored as A = Q R; the result is Q D, D = diag(sign(diag(R))), transposed
    back when rows < cols. D makes the factorisation unique, so that Q D is uniformly
    distributed over the orthogonal matrices (Mezzadri 2007); without it the signs
    would follow the QR routine's conventions. The QR runs on the host in float64.
    """
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"orthogonal: shape must be (rows, cols), both positive, got {shape}")
    backend = get_backend(device)
    rows, cols = shape
    drawn = backend.to_host(backend.normal((rows, cols), 1.0, backend.dtype("float64")))
    wide = rows < cols
    q, r = np.linalg.qr(drawn.T if wide else drawn)
    q = q * np.where(np.diagonal(r) < 0, -1.0, 1.0)
    q = gain * (q.T if wide else q)
    return Parameter(q, device=backend, dtype=dtype)


def xavier_bound(fan_in: int, fan_out: int) -> float:
    """Glorot/Xavier uniform bound sqrt(6 / (fan_in + fan_out)): it keeps the variance
    of activations and of gradients roughly equal from layer to layer."""
    return math.sqrt(6.0 / (fan_in + fan_out))


# --- layers -----------------------------------------------------------------------------
class Linear(Module):
    """An affine layer: ``x @ weight + bias``.

    Shapes: x (..., in_features) -> (..., out_features); weight (in_features,
    out_features), so rows of x are samples; bias (out_features,), or None with
    ``bias=False``.

    ``init="xavier"``: weight and bias uniform in [-w0, w0] with
    w0 = sqrt(6 / (in_features + out_features)). ``init="normal"``: weight and bias
    from N(0, std^2).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        init: str = "xavier",
        std: float = 0.01,
        bias: bool = True,
        device: str | Backend = "cpu",
        dtype: Any = "float32",
    ) -> None:
        if in_features < 1 or out_features < 1:
            raise ValueError(
                f"Linear: feature counts must be positive, got {in_features} and {out_features}"
            )
        if init == "xavier":
            bound = xavier_bound(in_features, out_features)
            draw = lambda shape: uniform(shape, bound, device, dtype)
        elif init == "normal":
            draw = lambda shape: normal(shape, std, device, dtype)
        else:
            raise ValueError(f"Linear: init must be 'xavier' or 'normal', got {init!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.weight = draw((in_features, out_features))
        self.bias = draw((out_features,)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        """(..., in_features) -> (..., out_features)."""
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"Linear: expected input of shape (..., {self.in_features}), got {x.shape}"
            )
        return x @ self.weight if self.bias is None else ops.linear(x, self.weight, self.bias)


class Embedding(Module):
    """A lookup table: row ``i`` of ``weight`` is the vector of item ``i``.

    Shapes: weight (num_embeddings, dim); indices (any shape, integers in
    [0, num_embeddings)) -> (*indices.shape, dim). The forward gathers rows; its
    backward scatter-adds, so an index used twice gets the sum of both gradients.

    ``init="normal"``: N(0, std^2); ``init="xavier"``: uniform in
    [-w0, w0], w0 = sqrt(6 / (num_embeddings + dim)).
    """

    def __init__(
        self,
        num_embeddings: int,
        dim: int,
        init: str = "normal",
        std: float = 0.01,
        device: str | Backend = "cpu",
        dtype: Any = "float32",
    ) -> None:
        if num_embeddings < 1 or dim < 1:
            raise ValueError(f"Embedding: sizes must be positive, got {num_embeddings} and {dim}")
        shape = (num_embeddings, dim)
        if init == "normal":
            self.weight = normal(shape, std, device, dtype)
        elif init == "xavier":
            self.weight = uniform(shape, xavier_bound(num_embeddings, dim), device, dtype)
        else:
            raise ValueError(f"Embedding: init must be 'normal' or 'xavier', got {init!r}")
        self.num_embeddings = num_embeddings
        self.dim = dim

    def forward(self, indices: Tensor) -> Tensor:
        """(*indices.shape) integers -> (*indices.shape, dim)."""
        _require_tensor(indices, "Embedding")
        return self.weight[indices]


def _require_tensor(indices: Any, caller: str) -> None:
    """Indices must be a Tensor. (The ops check that it holds integers, TypeError, and
    that they are in range, IndexError: NumPy would wrap negative indices and CuPy
    out-of-range ones.)"""
    if not isinstance(indices, Tensor):
        raise TypeError(
            f"{caller}: indices must be an integer Tensor, got {type(indices).__name__}"
        )


# --- losses -----------------------------------------------------------------------------
def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean over the batch of -log softmax(logits)[n, targets[n]]: a scalar.

    Shapes: logits (N, K) unnormalised scores; targets (N,) integer class indices
    in [0, K). Computed through log_softmax, so it stays finite for logits of any
    magnitude.
    """
    if logits.ndim != 2 or logits.shape[0] == 0:
        raise ValueError(
            f"cross_entropy: logits must have shape (N, K) with N > 0, got {logits.shape}"
        )
    count = logits.shape[0]
    if not isinstance(targets, Tensor) or targets.shape != (count,):
        shape = targets.shape if isinstance(targets, Tensor) else type(targets).__name__
        raise ValueError(
            f"cross_entropy: targets must be class indices of shape ({count},) "
            f"to match logits {logits.shape}, got {shape}"
        )
    return ops.cross_entropy(logits, targets)


def mse(prediction: Tensor, target: Tensor | Any) -> Tensor:
    """Mean of the squared differences over all elements: a scalar.

    The shapes must be equal: broadcasting (N, 1) against (N,) would silently
    compare every prediction with every target.
    """
    if not isinstance(target, Tensor):
        target = Tensor(target, device=prediction.backend, dtype=prediction.dtype)
    if prediction.shape != target.shape:
        raise ValueError(
            f"mse: prediction {prediction.shape} and target {target.shape} differ in shape"
        )
    if prediction.size == 0:
        raise ValueError("mse: of empty tensors (no elements to average)")
    return ops.sum_of_squares(prediction - target) / prediction.size


def bernoulli_kl(rho: float, rho_hat: Tensor, eps: float = 1e-6) -> Tensor:
    """KL(Bernoulli(rho) || Bernoulli(rho_hat)), elementwise; same shape as ``rho_hat``.

        rho log(rho / rho_hat) + (1 - rho) log((1 - rho) / (1 - rho_hat))

    ``rho`` is the target rate, a number in (0, 1). ``rho_hat`` is clipped into
    [eps, 1 - eps] first, so the result is finite even where a mean activation is
    exactly 0 or 1 (and no gradient flows through the clipped elements). Sum it
    for the sparsity penalty.
    """
    if not 0.0 < rho < 1.0:
        raise ValueError(f"bernoulli_kl: rho must lie in (0, 1), got {rho}")
    if not 0.0 < eps < 0.5:
        raise ValueError(f"bernoulli_kl: eps must lie in (0, 0.5), got {eps}")
    return ops.bernoulli_kl(rho_hat, rho=rho, eps=eps)
