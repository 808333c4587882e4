"""Core data structures: Value/Tensor graph nodes, Op, and reverse-mode differentiation."""

from functools import reduce
from operator import add
from typing import Dict, List, Tuple, Union

import numpy

from .backend_selection import (  # noqa: F401 (BACKEND is re-exported as in the course)
    BACKEND,
    Device,
    NDArray,
    all_devices,
    array_api,
    cpu,
    default_device,
)

__all__ = [
    "Op",
    "TensorOp",
    "TensorTupleOp",
    "Value",
    "Tensor",
    "TensorTuple",
    "Device",
    "cpu",
    "all_devices",
    "compute_gradient_of_variables",
    "find_topo_sort",
    "sum_node_list",
]

# Lazy mode builds the graph without computing; eager mode (default) computes as ops are called.
LAZY_MODE = False
# Live Value objects: incremented in Value._init, decremented in __del__ (memory tests read it).
TENSOR_COUNTER = 0


def dtype_name(data) -> str:
    """The dtype of an array (NDArray or numpy) as a string such as ``"float32"``."""
    dt = data.dtype
    return dt if isinstance(dt, str) else numpy.dtype(dt).name


def is_int_dtype(name: str) -> bool:
    """True for integer (and bool) dtype names: such tensors never require grad."""
    return name != "bfloat16" and numpy.dtype(name).kind in "iub"


class Op:
    """An operator: ``compute`` on arrays, ``gradient`` on Tensors.

    Set ``mixed_dtypes_ok = True`` on ops whose inputs may legitimately differ in dtype.
    """

    mixed_dtypes_ok = False

    def __call__(self, *args):
        raise NotImplementedError()

    def compute(self, *args: Tuple[NDArray]):
        """Forward computation on the inputs' arrays; returns an array."""
        raise NotImplementedError()

    def gradient(self, out_grad: "Value", node: "Value") -> Union["Value", Tuple["Value"]]:
        """Partial adjoints of the inputs, given the adjoint ``out_grad`` of ``node``."""
        raise NotImplementedError()

    def gradient_as_tuple(self, out_grad: "Value", node: "Value") -> Tuple["Value"]:
        """``gradient`` as a tuple, however many inputs the op has."""
        output = self.gradient(out_grad, node)
        if isinstance(output, tuple):
            return output
        if isinstance(output, list):
            return tuple(output)
        return (output,)


class TensorOp(Op):
    """An op whose output is a Tensor."""

    def __call__(self, *args):
        return Tensor.make_from_op(self, args)


class TensorTupleOp(Op):
    """An op whose output is a TensorTuple."""

    def __call__(self, *args):
        return TensorTuple.make_from_op(self, args)


class Value:
    """A node of the computational graph: the op that made it, its inputs, its cached array."""

    op: Op | None
    inputs: List["Value"]
    cached_data: NDArray
    requires_grad: bool

    def realize_cached_data(self):
        """The cached array, computing it (and the inputs') on first use."""
        if self.cached_data is not None:
            return self.cached_data
        self.cached_data = self.op.compute(*[x.realize_cached_data() for x in self.inputs])
        return self.cached_data

    def is_leaf(self):
        return self.op is None

    def __del__(self):
        global TENSOR_COUNTER
        TENSOR_COUNTER -= 1

    def _init(self, op, inputs, *, num_outputs=1, cached_data=None, requires_grad=None):
        global TENSOR_COUNTER
        TENSOR_COUNTER += 1
        if requires_grad is None:
            requires_grad = any(x.requires_grad for x in inputs)
        self.op = op
        self.inputs = inputs
        self.num_outputs = num_outputs
        self.cached_data = cached_data
        self.requires_grad = requires_grad

    @classmethod
    def make_const(cls, data, *, requires_grad=False):
        value = cls.__new__(cls)
        value._init(None, [], cached_data=data, requires_grad=requires_grad)
        return value

    @classmethod
    def make_from_op(cls, op: Op, inputs: List["Value"]):
        value = cls.__new__(cls)
        value._init(op, inputs)
        if not LAZY_MODE:
            if not value.requires_grad:
                # Nothing upstream needs gradients: keep the value, drop the graph.
                return value.detach()
            value.realize_cached_data()
        return value


class TensorTuple(Value):
    """A tuple of Tensors produced by a TensorTupleOp (e.g. ``split``)."""

    def __len__(self):
        return len(self.realize_cached_data())

    def __getitem__(self, index: int):
        from . import ops

        return ops.tuple_get_item(self, index)

    def __iter__(self):
        return iter([self[i] for i in range(len(self))])

    def tuple(self):
        return tuple(self)

    def __repr__(self):
        return "needle.TensorTuple" + str(self.tuple())

    def __str__(self):
        return self.__repr__()

    def __add__(self, other):
        from . import ops

        if not isinstance(other, TensorTuple) or len(self) != len(other):
            raise TypeError("TensorTuple + needs another TensorTuple of the same length")
        return ops.make_tuple(*[self[i] + other[i] for i in range(len(self))])

    def detach(self):
        """A constant TensorTuple with the same data."""
        return TensorTuple.make_const(self.realize_cached_data())


def _check_input_dtypes(op, inputs):
    if op.mixed_dtypes_ok or LAZY_MODE:  # lazy: reading dtypes would force computation
        return
    first = None
    for x in inputs:
        if not isinstance(x, Tensor):
            continue
        if first is None:
            first = x.dtype
        elif x.dtype != first:
            raise TypeError(f"dtype mismatch in {type(op).__name__}: {first} vs {x.dtype}")


def _full(shape, value, dtype, device):
    if array_api is numpy:
        return numpy.full(shape, value, dtype=dtype)
    return device.full(shape, value, dtype)


class Tensor(Value):
    """An n-d array that records the ops producing it, for reverse-mode autodiff.

    ``Tensor(x)`` accepts a Tensor, an NDArray, a numpy array or nested lists. ``dtype=None`` keeps
    the dtype of a Tensor/NDArray and means float32 for anything else (as the course does, so
    labels and ids are float32 unless asked otherwise). Integer tensors never require grad.
    """

    grad: "Tensor"

    def __init__(
        self, array, *, device: Device | None = None, dtype=None, requires_grad=True, **kwargs
    ):
        if isinstance(array, Tensor):
            cached_data = Tensor._convert_tensor(array, device, dtype)
        else:
            device = device if device else default_device()
            cached_data = Tensor._array_from_numpy(array, device=device, dtype=dtype)
        requires_grad = requires_grad and not is_int_dtype(dtype_name(cached_data))
        self._init(None, [], cached_data=cached_data, requires_grad=requires_grad)

    @staticmethod
    def _convert_tensor(tensor, device, dtype):
        device = device if device else tensor.device
        dtype = dtype if dtype else tensor.dtype
        data = tensor.realize_cached_data()
        if device == tensor.device and dtype == tensor.dtype:
            return data
        if array_api is numpy:
            return numpy.array(data, dtype=dtype)
        return array_api.array(data, device=device, dtype=dtype)

    @staticmethod
    def _array_from_numpy(numpy_array, device, dtype):
        if array_api is numpy:
            return numpy.array(numpy_array, dtype=dtype or "float32")
        if isinstance(numpy_array, NDArray):
            return NDArray(numpy_array, device=device, dtype=dtype)
        return array_api.array(numpy.asarray(numpy_array), device=device, dtype=dtype or "float32")

    @staticmethod
    def make_from_op(op: Op, inputs: List["Value"]):
        _check_input_dtypes(op, inputs)
        tensor = Tensor.__new__(Tensor)
        tensor._init(op, inputs)
        if LAZY_MODE:
            return tensor
        if not tensor.requires_grad:
            return tensor.detach()
        tensor.realize_cached_data()
        if is_int_dtype(tensor.dtype):
            return tensor.detach()
        return tensor

    @staticmethod
    def make_const(data, requires_grad=False):
        tensor = Tensor.__new__(Tensor)
        if isinstance(data, Tensor):
            data = data.realize_cached_data()
        requires_grad = requires_grad and not is_int_dtype(dtype_name(data))
        tensor._init(None, [], cached_data=data, requires_grad=requires_grad)
        return tensor

    @property
    def data(self):
        return self.detach()

    @data.setter
    def data(self, value):
        if not isinstance(value, Tensor):
            raise TypeError(f"Tensor.data must be set to a Tensor, got {type(value).__name__}")
        if value.dtype != self.dtype:
            raise TypeError(f"dtype mismatch in Tensor.data: {self.dtype} vs {value.dtype}")
        self.cached_data = value.realize_cached_data()

    def detach(self):
        """A new constant Tensor sharing this one's data, outside any graph."""
        return Tensor.make_const(self.realize_cached_data())

    @property
    def shape(self):
        return tuple(self.realize_cached_data().shape)

    @property
    def dtype(self):
        return dtype_name(self.realize_cached_data())

    @property
    def device(self):
        if array_api is numpy:
            return cpu()
        return self.realize_cached_data().device

    def backward(self, out_grad=None):
        """Accumulate d(self)/d(leaf) into ``.grad`` of every node that requires grad."""
        if is_int_dtype(self.dtype):
            raise TypeError(
                f"backward through an integer tensor ({self.dtype}) is not possible: "
                "integer tensors never require grad; cast with astype('float32') first"
            )
        if out_grad is None:
            out_grad = Tensor(
                _full(self.shape, 1, self.dtype, self.device),
                device=self.device,
                dtype=self.dtype,
                requires_grad=False,
            )
        compute_gradient_of_variables(self, out_grad)

    def __repr__(self):
        return "needle.Tensor(" + str(self.realize_cached_data()) + ")"

    def __str__(self):
        return self.realize_cached_data().__str__()

    def numpy(self):
        """The values as numpy (bfloat16 comes back as float32 values)."""
        data = self.realize_cached_data()
        if array_api is numpy:
            return data
        return data.numpy()

    # ---- operators ------------------------------------------------------------------------------

    def __add__(self, other):
        from . import ops

        if isinstance(other, Tensor):
            return ops.EWiseAdd()(self, other)
        return ops.AddScalar(other)(self)

    __radd__ = __add__

    def __mul__(self, other):
        from . import ops

        if isinstance(other, Tensor):
            return ops.EWiseMul()(self, other)
        return ops.MulScalar(other)(self)

    __rmul__ = __mul__

    def __pow__(self, other):
        from . import ops

        if isinstance(other, Tensor):
            return ops.EWisePow()(self, other)
        return ops.PowerScalar(other)(self)

    def __sub__(self, other):
        from . import ops

        if isinstance(other, Tensor):
            return ops.EWiseAdd()(self, ops.Negate()(other))
        return ops.AddScalar(-other)(self)

    def __rsub__(self, other):
        from . import ops

        return ops.AddScalar(other)(ops.Negate()(self))

    def __truediv__(self, other):
        from . import ops

        if isinstance(other, Tensor):
            return ops.EWiseDiv()(self, other)
        return ops.DivScalar(other)(self)

    def __rtruediv__(self, other):
        from . import ops

        return ops.MulScalar(other)(ops.PowerScalar(-1)(self))

    def __matmul__(self, other):
        from . import ops

        return ops.MatMul()(self, other)

    def matmul(self, other):
        return self.__matmul__(other)

    def sum(self, axes=None):
        from . import ops

        return ops.Summation(axes)(self)

    def broadcast_to(self, shape):
        from . import ops

        return ops.BroadcastTo(shape)(self)

    def reshape(self, shape):
        from . import ops

        return ops.Reshape(shape)(self)

    def __neg__(self):
        from . import ops

        return ops.Negate()(self)

    def transpose(self, axes=None):
        from . import ops

        return ops.Transpose(axes)(self)

    def __getitem__(self, index):
        from . import ops

        return ops.GetItem(index)(self)

    def astype(self, dtype):
        """Cast to ``dtype``; the gradient casts back (float targets only)."""
        from . import ops

        return ops.AsType(dtype)(self)


def compute_gradient_of_variables(output_tensor, out_grad):
    """Reverse-mode AD from ``output_tensor`` (adjoint ``out_grad``); sets ``node.grad``."""
    node_to_output_grads_list: Dict[Tensor, List[Tensor]] = {output_tensor: [out_grad]}
    for node in reversed(find_topo_sort([output_tensor])):
        grads = node_to_output_grads_list.pop(node, None)
        if not grads:
            continue
        node.grad = sum_node_list(grads)
        if node.is_leaf():
            continue
        partials = node.op.gradient_as_tuple(node.grad, node)
        for inp, partial in zip(node.inputs, partials):
            if inp.requires_grad:
                node_to_output_grads_list.setdefault(inp, []).append(partial)


def find_topo_sort(node_list: List[Value]) -> List[Value]:
    """Nodes reachable from ``node_list`` in topological (forward) order, by post-order DFS."""
    visited = set()
    topo_order = []
    for node in node_list:
        topo_sort_dfs(node, visited, topo_order)
    return topo_order


def topo_sort_dfs(node, visited, topo_order):
    """Post-order DFS from ``node`` (iterative, so deep graphs don't hit the recursion limit)."""
    stack = [(node, False)]
    while stack:
        current, children_done = stack.pop()
        if children_done:
            topo_order.append(current)
            continue
        if current in visited:
            continue
        visited.add(current)
        stack.append((current, True))
        stack.extend((x, False) for x in reversed(current.inputs) if x not in visited)


def sum_node_list(node_list):
    """Sum of a list of nodes (avoids ``sum``'s leading 0 so no needless AddScalar node)."""
    return reduce(add, node_list)
