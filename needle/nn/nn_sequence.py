"""Sequence modules: Sigmoid, RNNCell/RNN, LSTMCell/LSTM, Embedding (time-major (T, bs, .))."""
import math

import needle.init as init
from needle import ops

from .nn_basic import _expand_rows
from .nn_module import Module, Parameter

__all__ = ["Sigmoid", "RNNCell", "RNN", "LSTMCell", "LSTM", "Embedding"]


def sigmoid(x):
    """1 / (1 + exp(-x))."""
    return ops.sigmoid(x)


class Sigmoid(Module):
    """Logistic function."""

    def forward(self, x):
        return sigmoid(x)


def _uniform_param(*shape, bound, device, dtype):
    return Parameter(init.rand(*shape, low=-bound, high=bound, device=device, dtype=dtype,
                               requires_grad=True))


class _CellParams(Module):
    """W_ih (in, g*h), W_hh (h, g*h), bias_ih/bias_hh (g*h,), all U(+-1/sqrt(h))."""

    def __init__(self, input_size, hidden_size, gates, bias, device, dtype):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        bound, width = 1.0 / math.sqrt(hidden_size), gates * hidden_size
        kw = dict(bound=bound, device=device, dtype=dtype)
        self.W_ih = _uniform_param(input_size, width, **kw)
        self.W_hh = _uniform_param(hidden_size, width, **kw)
        self.bias_ih = _uniform_param(width, **kw) if bias else None
        self.bias_hh = _uniform_param(width, **kw) if bias else None

    def _check_input(self, X):
        if len(X.shape) != 2 or X.shape[1] != self.input_size:
            raise ValueError(f"{type(self).__name__}: expected (bs, {self.input_size}) input, "
                             f"got {X.shape}")

    def _zeros_state(self, X):
        return init.zeros(X.shape[0], self.hidden_size, device=X.device, dtype=X.dtype)

    def _preactivation(self, X, h):
        z = X @ self.W_ih + h @ self.W_hh
        if self.bias_ih is not None:
            z = z + _expand_rows(self.bias_ih, z.shape) + _expand_rows(self.bias_hh, z.shape)
        return z


class RNNCell(_CellParams):
    """h' = act(X W_ih + b_ih + h W_hh + b_hh), act in {'tanh', 'relu'}."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh",
                 device=None, dtype="float32"):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, 1, bias, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, X, h=None):
        self._check_input(X)
        h = self._zeros_state(X) if h is None else h
        z = self._preactivation(X, h)
        return ops.tanh(z) if self.nonlinearity == "tanh" else ops.relu(z)


class LSTMCell(_CellParams):
    """Gates in order i, f, g, o; c' = f*c + i*g, h' = o*tanh(c')."""

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype="float32"):
        super().__init__(input_size, hidden_size, 4, bias, device, dtype)

    def forward(self, X, h=None):
        self._check_input(X)
        h0, c0 = (self._zeros_state(X), self._zeros_state(X)) if h is None else h
        z = self._preactivation(X, h0)
        gates = ops.split(ops.reshape(z, (X.shape[0], 4, self.hidden_size)), axis=1)
        i, f, g, o = sigmoid(gates[0]), sigmoid(gates[1]), ops.tanh(gates[2]), sigmoid(gates[3])
        c = f * c0 + i * g
        return o * ops.tanh(c), c


def _check_sequence(X, input_size, where):
    if len(X.shape) != 3 or X.shape[2] != input_size:
        raise ValueError(f"{where}: expected (T, bs, {input_size}) input, got {X.shape}")


def _layer_states(state, num_layers, where):
    """Split an (L, bs, h) state into L tensors, or L Nones."""
    if state is None:
        return [None] * num_layers
    if state.shape[0] != num_layers:
        raise ValueError(f"{where}: state has {state.shape[0]} layers, expected {num_layers}")
    return list(ops.split(state, axis=0))


class RNN(Module):
    """Stacked RNN: forward(X (T, bs, in), h0 (L, bs, h)) -> (output (T, bs, h), h_n)."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, nonlinearity="tanh",
                 device=None, dtype="float32"):
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.rnn_cells = [
            RNNCell(input_size if k == 0 else hidden_size, hidden_size, bias, nonlinearity,
                    device=device, dtype=dtype)
            for k in range(num_layers)
        ]

    def forward(self, X, h0=None):
        _check_sequence(X, self.input_size, "RNN")
        xs = list(ops.split(X, axis=0))
        finals = []
        for cell, h in zip(self.rnn_cells, _layer_states(h0, self.num_layers, "RNN")):
            for t, x in enumerate(xs):
                h = cell(x, h)
                xs[t] = h
            finals.append(h)
        return ops.stack(xs, axis=0), ops.stack(finals, axis=0)


class LSTM(Module):
    """Stacked LSTM: forward(X (T, bs, in), (h0, c0) each (L, bs, h)) -> (out, (h_n, c_n))."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, device=None,
                 dtype="float32"):
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.lstm_cells = [
            LSTMCell(input_size if k == 0 else hidden_size, hidden_size, bias,
                     device=device, dtype=dtype)
            for k in range(num_layers)
        ]

    def _initial(self, h):
        if h is None:
            return [None] * self.num_layers
        hs = _layer_states(h[0], self.num_layers, "LSTM h0")
        cs = _layer_states(h[1], self.num_layers, "LSTM c0")
        return list(zip(hs, cs))

    def forward(self, X, h=None):
        _check_sequence(X, self.input_size, "LSTM")
        xs = list(ops.split(X, axis=0))
        h_n, c_n = [], []
        for cell, state in zip(self.lstm_cells, self._initial(h)):
            for t, x in enumerate(xs):
                state = cell(x, state)
                xs[t] = state[0]
            h_n.append(state[0])
            c_n.append(state[1])
        return ops.stack(xs, axis=0), (ops.stack(h_n, axis=0), ops.stack(c_n, axis=0))


class Embedding(Module):
    """Lookup table ``weight`` (num_embeddings, dim) ~ N(0, 1); ids (T, bs) -> (T, bs, dim).

    Ids may be float32 (course) or integer tensors; out-of-range ids raise ValueError.
    """

    def __init__(self, num_embeddings, embedding_dim, device=None, dtype="float32"):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = Parameter(init.randn(num_embeddings, embedding_dim, device=device,
                                           dtype=dtype, requires_grad=True))

    def forward(self, x):
        flat = 1
        for d in x.shape:
            flat *= d
        one_hot = init.one_hot(self.num_embeddings, x, device=self.weight.device,
                               dtype=self.weight.dtype)
        rows = ops.reshape(one_hot, (flat, self.num_embeddings)) @ self.weight
        return ops.reshape(rows, (*x.shape, self.embedding_dim))
