"""The peer runtimes of bench_models.py, each with its library's defaults: ONNX Runtime (fp32,
its own quantize_static / quantize_dynamic models), OpenVINO (optional) and eager torch."""

import os
import tempfile

import numpy as np

# ----------------------------------------------------------------------------- ONNX Runtime


def ort_session(model_bytes):
    """An ORT CPU session with ORT's default options (thread spinning on, all cores)."""
    import onnxruntime as ort

    return ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])


class _Reader:
    """ORT's CalibrationDataReader protocol over a list of input arrays."""

    def __init__(self, name, batches):
        self.items = iter([{name: b} for b in batches])

    def get_next(self):
        return next(self.items, None)

    def rewind(self):
        pass


def ort_quantized(model, kind, calibration=None):
    """The bytes of the model ``onnxruntime.quantization.quantize_static`` (kind "static", with
    ``calibration`` arrays) or ``quantize_dynamic`` (kind "dynamic") makes, all defaults."""
    import onnx
    from onnxruntime.quantization import quantize_dynamic, quantize_static

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "f32.onnx"), os.path.join(tmp, "q.onnx")
        onnx.save(model, src)
        if kind == "static":
            quantize_static(src, dst, _Reader(model.graph.input[0].name, calibration))
        else:
            quantize_dynamic(src, dst)
        with open(dst, "rb") as f:
            return f.read()


# ----------------------------------------------------------------------------- OpenVINO


def openvino_model(model_bytes):
    """OpenVINO's compiled CPU model (its defaults) as ``fn(x) -> output``, or None when the
    ``openvino`` package is not installed (it is an optional bench extra)."""
    try:
        import openvino as ov
    except ImportError:
        return None
    core = ov.Core()
    compiled = core.compile_model(core.read_model(model_bytes), "CPU")
    request = compiled.create_infer_request()

    def run(x):
        return request.infer([x])[0]

    return run


# ----------------------------------------------------------------------------- torch


def torch_replay(model):
    """``fn(x)``: the ONNX float graph run op by op as eager torch fp32 calls (torch's own
    kernels; the graph is the zoo model's as captured, e.g. the LSTM unrolled over time)."""
    import torch
    from onnx import helper, numpy_helper

    consts = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy())
              for t in model.graph.initializer}
    steps = []
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type not in _TORCH_OPS:
            raise NotImplementedError(f"torch_replay: ONNX op {node.op_type}")
        steps.append((_TORCH_OPS[node.op_type], list(node.input), list(node.output), attrs))
    x_name, out_name = model.graph.input[0].name, model.graph.output[0].name

    @torch.inference_mode()
    def run(x):
        env = dict(consts)
        env[x_name] = torch.from_numpy(x)
        for fn, ins, outs, attrs in steps:
            got = fn(*[env[i] if i else None for i in ins], **attrs)
            if len(outs) == 1:
                env[outs[0]] = got
            else:
                env.update(zip(outs, got))
        return env[out_name].numpy()

    return run


def _reshape(x, shape, allowzero=0):
    dims = [x.shape[i] if d == 0 and not allowzero else int(d)
            for i, d in enumerate(shape.tolist())]
    return x.reshape(dims)


def _expand(x, shape):
    import torch

    return x.expand(torch.broadcast_shapes(tuple(x.shape), tuple(shape.tolist())))


def _squeeze(x, axes=None):
    return x.squeeze(tuple(axes.tolist())) if axes is not None else x.squeeze()


def _unsqueeze(x, axes):
    for a in sorted(axes.tolist()):
        x = x.unsqueeze(a)
    return x


def _split(x, split=None, axis=0, num_outputs=None):
    if split is not None:
        return x.split(split.tolist(), dim=axis)
    return x.chunk(num_outputs, dim=axis)


def _conv(x, w, b=None, kernel_shape=None, pads=(0, 0, 0, 0), strides=(1, 1), **_):
    import torch

    return torch.nn.functional.conv2d(x, w, b, stride=tuple(strides),
                                      padding=(pads[0], pads[1]))


def _layer_norm(x, w, b=None, axis=-1, epsilon=1e-5, **_):
    import torch

    return torch.nn.functional.layer_norm(x, (x.shape[-1],), w, b, epsilon)


def _cast(x, to):
    import torch

    return x.to({1: torch.float32, 7: torch.int64, 6: torch.int32}[to])


def _shape(x, start=0, end=None):
    import torch

    return torch.tensor(tuple(x.shape)[start:end], dtype=torch.int64)


def _constant_of_shape(shape, value=None):
    import torch
    from onnx import numpy_helper

    fill = numpy_helper.to_array(value).item() if value is not None else 0.0
    return torch.full(tuple(shape.tolist()), fill, dtype=torch.float32)


def _build_ops():
    import torch

    return {
        "MatMul": torch.matmul, "Add": torch.add, "Mul": torch.mul, "Div": torch.div,
        "Relu": torch.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh,
        "Identity": lambda x: x, "Reshape": _reshape, "Expand": _expand, "Conv": _conv,
        "Squeeze": _squeeze, "Unsqueeze": _unsqueeze, "Split": _split, "Cast": _cast,
        "Shape": _shape, "ConstantOfShape": _constant_of_shape,
        "LayerNormalization": _layer_norm,
        "Gather": lambda data, idx, axis=0: torch.index_select(
            data, axis, idx.reshape(-1)).reshape(tuple(idx.shape) + tuple(data.shape[1:])),
        "Concat": lambda *xs, axis: torch.cat(xs, dim=axis),
        "Transpose": lambda x, perm: x.permute(*perm),
        "Softmax": lambda x, axis=-1: torch.softmax(x, dim=axis),
    }


class _LazyOps(dict):
    """The op table, built on first use (torch is imported only when it is benchmarked)."""

    def __missing__(self, key):
        if not len(self):
            self.update(_build_ops())
            if key in self:
                return self[key]
        raise KeyError(key)

    def __contains__(self, key):
        if not len(self):
            self.update(_build_ops())
        return dict.__contains__(self, key)


_TORCH_OPS = _LazyOps()


def max_rel_error(got, want):
    """max |got - want| / max |want| (want: the fp32 reference output)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))
