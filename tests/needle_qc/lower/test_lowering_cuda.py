"""compile(target="cuda"): integer nodes dispatched to the CUDA kernels, CPU bits, CPU fallbacks.

Two kinds of tests share one set of checks:

- ``..._plumbing`` tests touch no GPU: :func:`needle_qc.lower.common.cuda_kernels` is replaced
  by a stand-in that exposes only the CUDA module's API (functions and packed-weight attributes)
  over the CPU kernels, and records every call;
- ``..._on_gpu`` tests run the real :mod:`needle_qc._quant_cuda` (behind the same recorder) and
  skip visibly when it is not built or no GPU is visible.
"""

import collections
import functools
import importlib
import inspect
import re

import numpy as np
import pytest

import needle_qc as qc
from needle_qc.ir.graph import Graph
from needle_qc.lower import common as lowering_common
from needle_qc.lower import driver as lowering
from needle_qc.pipeline import compile
from needle_qc.quantize import QConfig
from needle_qc.quantize.api import quantize_pass
from needle_qc.tools import zoo
from tests.needle_qc.quantize.passes.test_fuse_qdq_affine import affine_layer, fused

cpu_kernels = pytest.importorskip("needle_qc._quant_cpu",
                                  reason="native module not built (make native)")

CUDA_API = frozenset({
    "PackedConvWeight", "PackedWeightLowBit", "PackedWeightS8", "conv2d_u8s8_f32",
    "conv2d_u8s8_requant", "conv2d_u8s8_s32", "dequantize", "device_count",
    "dynamic_quantize_rows", "dynamic_quantize_u8", "gemm_f32_wbf16", "gemm_f32_wf16",
    "gemm_f32_wint4", "gemm_s8s8_f32", "gemm_s8s8_requant", "gemm_s8s8_s32", "gemm_u8s8_f32",
    "gemm_u8s8_requant", "gemm_u8s8_s32", "kernel_info", "pack_conv_weight_s8",
    "pack_weight_bf16", "pack_weight_f16", "pack_weight_int4", "pack_weight_s8", "quantize_f32",
})
"""The public names of needle_qc._quant_cuda (checked against the module when it is built)."""

PACKED_ATTRS = {
    "PackedWeightS8": {"K", "N", "colsum", "max_pair_abs", "nbytes", "zero_point"},
    "PackedConvWeight": {"gemm_weight", "kernel_shape", "nbytes"},
    "PackedWeightLowBit": {"K", "N", "format", "group_size", "n_overflow", "n_subnormal",
                           "nbytes"},
}
"""The attributes of the CUDA module's packed weights (the lowering may read no others)."""

DISPATCHED = ("qlinear", "qconv2d", "quantize", "dequantize")
STATIC = dict(weight="int8", activation="static")
UINT8_AFFINE = dict(weight="uint8", activation="static", weight_symmetric=False,
                    weight_granularity="per_tensor")


# ----------------------------------------------------------------------------- kernel modules

class _Packed:
    """A CPU packed weight seen through the CUDA class's attributes only."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        kind = type(self.inner).__name__
        if name not in PACKED_ATTRS[kind]:
            raise AttributeError(f"the CUDA {kind} has no attribute {name!r}")
        return _as_cuda(getattr(self.inner, name))


def _as_cuda(value):
    return _Packed(value) if type(value).__name__ in PACKED_ATTRS else value


def _as_cpu(value):
    return value.inner if isinstance(value, _Packed) else value


def _split_top(text):
    """``text`` split at the commas outside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [p.strip() for p in parts + [text[start:]] if p.strip()]


@functools.cache
def cuda_signature(name):
    """(Signature, {param: packed class name}) of a real CUDA function from its pybind11
    docstring, or None when the CUDA module is not built."""
    try:
        module = importlib.import_module("needle_qc._quant_cuda")
    except ImportError:
        return None
    head = getattr(module, name).__doc__.splitlines()[0]
    inner = re.match(rf"{name}\((.*)\) ->", head).group(1)
    params, packed = [], {}
    for part in _split_top(inner):
        pname, _, rest = part.partition(":")
        annotation, has_default, _ = rest.partition("=")
        kind = re.search(r"_quant_cuda\.(Packed\w+)", annotation)
        if kind:
            packed[pname] = kind.group(1)
        default = None if has_default else inspect.Parameter.empty
        params.append(inspect.Parameter(pname, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                        default=default))
    return inspect.Signature(params), packed


def check_cuda_call(name, args, kwargs):
    """Raise TypeError when the call would not bind to the real CUDA function's signature or
    passes a packed weight of the wrong class (checked only where the module is built)."""
    found = cuda_signature(name)
    if found is None:
        return
    signature, packed = found
    bound = signature.bind(*args, **kwargs)  # TypeError names the mismatch
    for pname, kind in packed.items():
        value = bound.arguments.get(pname)
        if not isinstance(value, _Packed) or type(value.inner).__name__ != kind:
            raise TypeError(f"{name}: argument {pname} must be a {kind}, got {value!r}")


class Recording:
    """A kernel module that records the name of every function called on it.

    ``Recording(module)`` forwards to ``module``; ``Recording.cpu_as_cuda()`` is the stand-in:
    the CPU kernels restricted to the CUDA module's API (each call checked against the CUDA
    function's signature), reporting one visible device.
    """

    def __init__(self, module, restrict=False):
        self.module, self.restrict, self.calls = module, restrict, []

    @classmethod
    def cpu_as_cuda(cls):
        return cls(cpu_kernels, restrict=True)

    def device_count(self):
        return 1 if self.restrict else self.module.device_count()

    def __getattr__(self, name):
        if self.restrict and name not in CUDA_API:
            raise AttributeError(f"needle_qc._quant_cuda has no {name!r}")
        fn = getattr(self.module, name)
        if not callable(fn) or isinstance(fn, type):
            return fn

        def call(*args, **kwargs):
            self.calls.append(name)
            if self.restrict:
                check_cuda_call(name, args, kwargs)
            out = fn(*map(_as_cpu, args), **{k: _as_cpu(v) for k, v in kwargs.items()})
            return _as_cuda(out) if self.restrict else out

        call.__name__ = name
        return call


def _real_cuda_module():
    try:
        return importlib.import_module("needle_qc._quant_cuda")
    except ImportError as err:
        pytest.skip(f"needle_qc._quant_cuda is not built (no nvcc at build time?): {err}")


@pytest.fixture
def standin(monkeypatch):
    """The CUDA lowering over the CPU kernels (no GPU touched); returns the recorder."""
    rec = Recording.cpu_as_cuda()
    monkeypatch.setattr(lowering_common, "cuda_kernels", lambda: rec)
    return rec


@pytest.fixture
def gpu(monkeypatch):
    """The real CUDA kernels behind the recorder; skips without a visible GPU."""
    module = _real_cuda_module()
    if module.device_count() == 0:
        pytest.skip("no CUDA GPU visible (needle_qc._quant_cuda.device_count() == 0)")
    rec = Recording(module)
    monkeypatch.setattr(lowering_common, "cuda_kernels", lambda: rec)
    return rec


# ----------------------------------------------------------------------------- models

@functools.cache
def integer_model(name, cfg_items):
    """(integer graph, its CPU CompiledModel) of a pretrained zoo model under a QConfig."""
    model = zoo.load_pretrained(name)
    prepared = quantize_pass(qc.trace(model, zoo.example_input(name, 8)),
                             QConfig(**dict(cfg_items)))
    cfg = dict(cfg_items)
    cal = [b for b, _ in zoo.batches(name, "train", 32, limit=2)] \
        if cfg.get("activation") == "static" else None
    cm = compile(prepared, calibration=cal, force_int8=True, tune_kernels=False)
    return cm.graph, cm


def models(name, cfg, **kw):
    """(CUDA CompiledModel, CPU CompiledModel) of one zoo model (forced int8)."""
    graph, cpu_model = integer_model(name, tuple(sorted(cfg.items())))
    kw.setdefault("tune_kernels", False)
    return compile(graph, target="cuda", force_int8=True, **kw), cpu_model


def zoo_input(name, batch, seed=3):
    return zoo.example_input(name, batch, seed=seed) if zoo.get(name).dataset is None else \
        zoo.batches(name, "heldout", batch, limit=seed + 1)[seed][0]


def called_kernel(impl):
    """The module function a CUDA step calls: ``cuda: conv2d_u8s8_requant (NHWC)`` ->
    ``conv2d_u8s8_requant``, ``cuda: u8s8 gemm s32 + fp32 scale`` -> ``gemm_u8s8_s32``."""
    name = impl.kernel.removeprefix("cuda: ")
    if " gemm s32" in name:
        return f"gemm_{name.split(' ')[0]}_s32"
    return name.split(" ")[0]


def assert_same_bits(got, want, what):
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, what
    if got.dtype == np.float32:
        got, want = got.view(np.uint32), want.view(np.uint32)
    np.testing.assert_array_equal(got, want, err_msg=what)


# ----------------------------------------------------------------------------- shared checks

def check_dispatch_and_bits(rec, name, cfg, batches=(7,)):
    """Every qlinear/qconv2d/quantize/dequantize node runs its CUDA kernel once per call, no
    weight is packed after compile, every node's value and the output equal the CPU's bits."""
    cm, cpu_model = models(name, cfg)
    steps = [s for s in cm.program.steps if s.op in DISPATCHED]
    assert {s.op for s in steps} >= {"qlinear", "quantize", "dequantize"}
    for step in steps:
        assert step.active.device == "cuda", (step.node, step.active.why)
        assert cm.explain().row(step.node)["kernel"].startswith("cuda: "), step.node
    packs = [c for c in rec.calls if c.startswith("pack_")]
    assert len(packs) == sum(s.op in ("qlinear", "qconv2d") for s in steps), rec.calls
    for batch in batches:
        x = zoo_input(name, batch)
        rec.calls.clear()
        got = cm(x)
        want = collections.Counter(called_kernel(s.active) for s in cm.program.steps
                                   if s.active.device == "cuda")
        assert collections.Counter(rec.calls) == want
        assert_same_bits(got, cpu_model(x), f"{name} output at batch {batch}")
        cuda_values, cpu_values = cm.node_values(x), cpu_model.node_values(x)
        for step in steps:
            assert_same_bits(cuda_values[step.node], cpu_values[step.node],
                             f"%{step.node} at batch {batch}")
    return cm


def check_fallbacks_are_explained(cm):
    """Every step not on a CUDA kernel says ``cpu fallback: <why>`` in explain()."""
    rows = {r["node"]: r for r in cm.explain().rows}
    for step in cm.program.steps:
        if step.active.device != "cuda":
            assert step.active.kernel.startswith("cpu: "), step.active.kernel
            assert step.active.why.startswith("cpu fallback: "), step.active.why
    assert any(r["kernel"].startswith("cuda: ") for r in rows.values())
    text = str(cm.explain())
    assert "target=cuda" in text and "cuda: gemm_u8s8_requant" in text


# ----------------------------------------------------------------------------- plumbing

def test_standin_has_exactly_the_cuda_api_plumbing():
    """The stand-in's API list is the CUDA module's (no GPU needed to list it)."""
    module = _real_cuda_module()
    assert {n for n in dir(module) if not n.startswith("_")} == CUDA_API
    for kind, attrs in PACKED_ATTRS.items():
        assert {a for a in dir(getattr(module, kind)) if not a.startswith("_")} == attrs


@pytest.mark.parametrize("name", ["mlp", "small_cnn"])
def test_static_int8_zoo_dispatches_every_integer_node_plumbing(standin, name):
    """Does not touch a GPU: the CPU kernels stand in for the CUDA module."""
    cm = check_dispatch_and_bits(standin, name, STATIC, batches=(1, 7, 64))
    check_fallbacks_are_explained(cm)
    kernels = {s.op: s.active.kernel for s in cm.program.steps}
    assert kernels["qlinear"] == "cuda: gemm_u8s8_requant"
    assert kernels["quantize"] == "cuda: quantize_f32"
    assert kernels["dequantize"] == "cuda: dequantize"
    if name == "small_cnn":
        assert kernels["qconv2d"] == "cuda: conv2d_u8s8_requant (NHWC)"
        layout = next(s for s in cm.program.steps if s.op == "layout")
        assert layout.active.why.startswith("cpu fallback: layout copy on the host")


def test_uint8_affine_mlp_plumbing(standin):
    """Does not touch a GPU: weights with zero points go to the CUDA GEMM, CPU bits."""
    cm = check_dispatch_and_bits(standin, "mlp", UINT8_AFFINE, batches=(1, 7))
    layers = [s for s in cm.program.steps if s.op == "qlinear"]
    assert all("weight zero point applied in kernel" in s.active.why for s in layers)


def test_float_output_and_dynamic_layers_plumbing(standin):
    """Does not touch a GPU: linear_dynamic / conv2d_dynamic run the CUDA dynamic kernels."""
    for name in ("mlp", "small_cnn"):
        cm, cpu_model = models(name, dict(weight="int8", activation="dynamic"))
        dynamic = [s for s in cm.program.steps if s.op.endswith("_dynamic")]
        assert dynamic and all(s.active.device == "cuda" for s in dynamic)
        x = zoo_input(name, 5)
        standin.calls.clear()
        assert_same_bits(cm(x), cpu_model(x), name)
        assert "dynamic_quantize_u8" in standin.calls


WEIGHT_ONLY_CUDA = {"f16": (dict(weight="fp16"), "gemm_f32_wf16"),
                    "bf16": (dict(weight="bf16"), "gemm_f32_wbf16"),
                    "int4": (dict(weight="int4", group_size=32), "gemm_f32_wint4")}


@pytest.mark.parametrize("name", ["mlp", "small_cnn"])
@pytest.mark.parametrize("fmt", list(WEIGHT_ONLY_CUDA))
def test_weight_only_formats_run_cuda_kernels_plumbing(standin, fmt, name):
    """Does not touch a GPU: fp16 / bf16 / int4 weight-only layers (linear and conv) call the
    CUDA GEMM of their format; explain() says their fp32 sums are the GPU's order."""
    cfg, kernel = WEIGHT_ONLY_CUDA[fmt]
    cm, cpu_model = models(name, cfg)
    layers = [s for s in cm.program.steps if s.op.endswith("_weight_only")]
    assert layers and all(s.active.device == "cuda" for s in layers)
    assert all(called_kernel(s.active) in (kernel, "im2col") and kernel in s.active.kernel
               and "not bit-identical" in s.active.why for s in layers)
    x = zoo_input(name, 4)
    standin.calls.clear()
    np.testing.assert_array_equal(cm(x), cpu_model(x))  # the stand-in is the CPU itself
    assert standin.calls.count(kernel) == len(layers)


def test_weight_only_int8_falls_back_to_the_cpu_plumbing(standin):
    """Does not touch a GPU: int8 weight-only has no CUDA kernel (gemm_f32_wint8): CPU, saying
    why."""
    x = zoo_input("mlp", 4)
    cm, cpu_model = models("mlp", dict(weight="int8"))
    layers = [s for s in cm.program.steps if s.op == "linear_weight_only"]
    assert layers and all(s.active.device == "cpu" for s in layers)
    assert all(s.active.why.startswith("cpu fallback: no CUDA kernel for gemm_f32_wint8")
               for s in layers)
    np.testing.assert_array_equal(cm(x), cpu_model(x))


LAYERS = {  # one fused layer (affine_layer): float outputs, int8 activations, zero points
    "linear-f32-out": ("linear", "u8 z=255", dict(float_out=True, relu=False)),
    "linear-s8-act": ("linear", "i8 per-channel", dict(act_dtype="int8")),
    "linear-s8-act-f32": ("linear", "u8 per-channel", dict(act_dtype="int8", float_out=True)),
    "conv-zp": ("conv", "u8 z=77", dict(stride=2, cin=5)),
    "conv-f32-out": ("conv", "u8 per-channel", dict(float_out=True, relu=False)),
}


def check_layer(rec, case):
    """One fused layer on target "cuda": its CUDA kernel is called, the bits are the CPU's."""
    kind, zp_case, kw = LAYERS[case]
    graph, x = affine_layer(kind, zp_case, seed=7, **kw)
    integer = fused(graph)
    cm = compile(integer, target="cuda", force_int8=True, tune_kernels=False)
    step = next(s for s in cm.program.steps if s.node == "fc" and s.op != "layout")
    assert step.active.device == "cuda", step.active.why
    rec.calls.clear()
    got = cm(x)
    assert called_kernel(step.active) in rec.calls, (step.active.kernel, rec.calls)
    assert_same_bits(got, compile(integer, force_int8=True, tune_kernels=False)(x), case)
    assert_same_bits(got, integer(x).numpy(), f"{case} vs the reference")


@pytest.mark.parametrize("case", list(LAYERS))
def test_layer_variants_plumbing(standin, case):
    """Does not touch a GPU: s32 + fp32-scale outputs, s8s8 GEMMs, weight zero points."""
    check_layer(standin, case)


NUMPY_OPS = """\
%x = placeholder() : f32[N,8]
%x_q = quantize(%x) {dtype="uint8"} : u8[N,8]{s=0.03125, z=128}
%r = requantize(%x_q) {dtype="int8"} : i8[N,8]{s=0.05, z=-3}
%a = qadd(%x_q, %r) {dtype="uint8", activation="relu"} : u8[N,8]{s=0.04, z=90}
%y = dequantize(%a) {axis=-1, group_size=0} : f32[N,8]
return %y"""


def test_ops_without_cuda_kernels_fall_back_to_the_cpu_plumbing(standin):
    """Does not touch a GPU: requantize / qadd have no CUDA kernel; explain() says so."""
    g = Graph.parse(NUMPY_OPS, {}).lint()
    cm = compile(g, target="cuda", force_int8=True, tune_kernels=False)
    rows = {r["node"]: r for r in cm.explain().rows}
    assert rows["x_q"]["kernel"] == "cuda: quantize_f32"
    assert rows["y"]["kernel"] == "cuda: dequantize"
    for node, op in (("r", "requantize"), ("a", "qadd")):
        assert rows[node]["kernel"].startswith("cpu: "), rows[node]
        assert rows[node]["why"].startswith(f"cpu fallback: no CUDA kernel for {op}")
    x = np.random.default_rng(0).uniform(-4, 4, (6, 8)).astype(np.float32)
    np.testing.assert_array_equal(cm(x), compile(g, tune_kernels=False)(x))
    np.testing.assert_array_equal(cm(x), g(x).numpy())


def test_never_slower_tuning_works_for_cuda_plumbing(standin, monkeypatch):
    """Does not touch a GPU: a CUDA kernel timed slower is swapped for the CPU float version
    (and explain() says where that runs); force_int8 keeps the CUDA kernel."""
    monkeypatch.setattr(lowering, "measure", lambda kind, fn: 2.0 if kind == "int8" else 1.0)
    cm, _ = models("mlp", STATIC, tune_kernels=True)
    cm = compile(cm.graph, target="cuda", tune_kernels=True)
    layer = next(s for s in cm.program.steps if s.op == "qlinear")
    row = cm.explain().row(layer.node)
    assert row["status"] == "kept float (int8 slower)"
    assert row["kernel"].startswith("cpu: fp32 gemm")
    assert row["why"].startswith("cpu fallback: the float version runs on the CPU")
    forced = compile(cm.graph, target="cuda", force_int8=True, autotune=True)
    row = forced.explain().row(layer.node)
    assert row["status"] == "int8 (forced, slower)" and row["kernel"].startswith("cuda: ")


def test_saved_cuda_model_loads_for_cuda_plumbing(standin, tmp_path):
    """Does not touch a GPU: save/load keeps the target and lowers again onto CUDA kernels."""
    from needle_qc.runtime.serialize import load, save

    cm, cpu_model = models("small_cnn", STATIC)
    save(cm, tmp_path / "m.nqc")
    loaded = load(tmp_path / "m.nqc")
    assert loaded.target == "cuda"
    assert all(s.active.device == "cuda" for s in loaded.program.steps if s.op in DISPATCHED)
    x = zoo_input("small_cnn", 3)
    assert_same_bits(loaded(x), cpu_model(x), "loaded model")


def test_signature_check_catches_a_wrong_call_plumbing():
    """The stand-in refuses a call the real CUDA function would (so plumbing proves the calls)."""
    if cuda_signature("gemm_u8s8_requant") is None:
        pytest.skip("needle_qc._quant_cuda is not built: no signatures to check against")
    rec = Recording.cpu_as_cuda()
    w = np.ones((4, 3), np.int8)
    pw = rec.pack_weight_s8(w, None)
    a = np.ones((2, 4), np.uint8)
    args = (np.zeros(3, np.int32), np.ones(3, np.float32), 0, 0, 255)
    assert rec.gemm_u8s8_requant(a, 0, pw, *args).shape == (2, 3)
    with pytest.raises(TypeError, match="unexpected keyword|got an unexpected"):
        rec.gemm_u8s8_requant(a, 0, pw, *args, a_bound=3)
    with pytest.raises(TypeError, match="must be a PackedWeightS8"):
        rec.gemm_u8s8_requant(a, 0, w, *args)
    with pytest.raises(AttributeError, match="no 'accumulator_bound'"):
        rec.accumulator_bound(4, (0, 255), pw)


def test_accumulator_bound_twin_equals_the_cpu_kernel_plumbing():
    """The NumPy bound used on CUDA (no accumulator_bound there) is the CPU kernel's number."""
    r = np.random.default_rng(5)
    for k, n in ((1, 1), (37, 19), (300, 5)):
        w = r.integers(-128, 128, (k, n)).astype(np.int8)
        for zp in (None, r.integers(-128, 128, n).astype(np.int32)):
            packed = cpu_kernels.pack_weight_s8(w, zp)
            for a_range in ((0, 255), (-128, 127), (-200, 55), (-255, 255)):
                assert lowering_common.accumulator_bound(k, a_range, w, zp) == \
                    cpu_kernels.accumulator_bound(k, a_range, packed)


# ----------------------------------------------------------------------------- errors

def test_cuda_without_the_module_is_refused(monkeypatch):
    monkeypatch.setattr(lowering_common, "cuda_kernels", lambda: None)
    graph, _ = integer_model("mlp", tuple(sorted(STATIC.items())))
    with pytest.raises(ValueError, match=r"target='cuda' needs the CUDA int8 kernels "
                                         r"\(needle_qc._quant_cuda\), which are not built"):
        compile(graph, target="cuda")


def test_cuda_without_a_visible_gpu_is_refused(monkeypatch):
    rec = Recording.cpu_as_cuda()
    rec.device_count = lambda: 0
    monkeypatch.setattr(lowering_common, "cuda_kernels", lambda: rec)
    graph, _ = integer_model("mlp", tuple(sorted(STATIC.items())))
    with pytest.raises(ValueError, match=r"target='cuda' but no CUDA GPU is visible"):
        compile(graph, target="cuda")
    assert rec.calls == []  # refused before any weight was packed


def test_cuda_on_this_machine_without_gpu_is_refused():
    module = _real_cuda_module()
    if module.device_count() > 0:
        pytest.skip("a CUDA GPU is visible: target='cuda' is valid here")
    graph, _ = integer_model("mlp", tuple(sorted(STATIC.items())))
    with pytest.raises(ValueError, match=r"no CUDA GPU is visible \(needle_qc._quant_cuda"):
        compile(graph, target="cuda")


# ----------------------------------------------------------------------------- real GPU

@pytest.mark.parametrize("name", ["mlp", "small_cnn"])
def test_static_int8_zoo_bit_exact_on_gpu(gpu, name):
    cm = check_dispatch_and_bits(gpu, name, STATIC, batches=(1, 7, 64))
    check_fallbacks_are_explained(cm)


@pytest.mark.parametrize("case", list(LAYERS))
def test_layer_variants_bit_exact_on_gpu(gpu, case):
    check_layer(gpu, case)


def test_uint8_affine_mlp_bit_exact_on_gpu(gpu):
    check_dispatch_and_bits(gpu, "mlp", UINT8_AFFINE, batches=(1, 7, 64))


@pytest.mark.parametrize("name", ["mlp", "small_cnn"])
def test_dynamic_layers_bit_exact_on_gpu(gpu, name):
    cm, cpu_model = models(name, dict(weight="int8", activation="dynamic"))
    assert any(s.op.endswith("_dynamic") and s.active.device == "cuda"
               for s in cm.program.steps)
    for batch in (1, 7, 64):
        x = zoo_input(name, batch)
        assert_same_bits(cm(x), cpu_model(x), f"{name} batch {batch}")


@pytest.mark.parametrize("name", ["mlp", "small_cnn"])
@pytest.mark.parametrize("fmt", list(WEIGHT_ONLY_CUDA))
def test_weight_only_close_to_cpu_on_gpu(gpu, fmt, name):
    cm, cpu_model = models(name, WEIGHT_ONLY_CUDA[fmt][0])
    layers = [s for s in cm.program.steps if s.op.endswith("_weight_only")]
    assert layers and all(s.active.device == "cuda" for s in layers)
    x = zoo_input(name, 7)
    # fp32 sums in another order: a few ulp of the logits' scale
    np.testing.assert_allclose(cm(x), cpu_model(x), rtol=1e-4, atol=1e-4)


def test_tuned_cuda_model_matches_cpu_on_gpu(gpu):
    """With real timings: whatever tune keeps (CUDA int8 or CPU float), the outputs are the
    chosen kernels' and every step says where it ran."""
    graph, cpu_model = integer_model("small_cnn", tuple(sorted(STATIC.items())))
    cm = compile(graph, target="cuda")
    x = zoo_input("small_cnn", 7)
    if all(s.choice == "primary" for s in cm.program.steps):
        assert_same_bits(cm(x), cpu_model(x), "tuned output")
    for step in cm.program.steps:
        assert step.active.kernel.startswith(("cuda: ", "cpu: ")), step.active.kernel
