"""Which Needle a model belongs to, what it offers, and which one a computation runs on.

needle_qc never uses "whatever ``needle`` is imported": the framework of a model is the
package its classes come from (``type(model).__module__``'s root in ``sys.modules``), or one
passed explicitly. Its capabilities are probed once (:func:`probe`). Graph runs bind a
framework for their duration (:func:`using`); the op table's evaluators read it with
:func:`current`. Compiled programs bind :data:`OWN` (NumPy arrays owned by needle_qc) unless
the graph came from the bundled reference Needle.
"""
import contextlib
import contextvars
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from needle_qc.errors import NeedleQCError
from needle_qc.frontend import own

_REQUIRED = ("Tensor", "autograd", "nn", "ops", "init")
_ACTIVE = contextvars.ContextVar("needle_qc_framework", default=None)


class FrameworkError(NeedleQCError, TypeError):
    """A model's framework lacks something needle_qc needs (the message says what)."""


@dataclass
class Framework:
    """One Needle implementation: its root module and what it offers.

    Attributes
    ----------
    module : module or namespace
        The package (``needle``) or :mod:`needle_qc.frontend.own`.
    name : str
        Where it lives (the package's directory), for messages.
    bundled : bool
        True for the reference Needle shipped with needle_qc.
    caps : dict
        From :func:`probe`: ``dtypes``, ``zero_copy_to_numpy``, ``has_mod``, ``op_classes``
        (class name -> constructor parameter names), ``tensor_has_bool``.
    """

    module: object
    name: str
    bundled: bool = False
    caps: dict = field(default_factory=dict)

    @property
    def is_own(self):
        return self.module is own

    def is_tensor(self, value):
        return isinstance(value, self.module.Tensor)

    def tensor(self, array, device=None, dtype=None):
        """A constant Tensor of this framework holding ``array``."""
        array = np.asarray(array)
        dtype = dtype or array.dtype.name
        if not self.bundled and dtype not in self.caps.get("dtypes", (dtype,)):
            raise FrameworkError(f"{self.name}: its Tensor holds {sorted(self.caps['dtypes'])}"
                                 f" only, not {dtype} (needle_qc keeps such values in its own "
                                 "arrays; this is a bug if you see it)")
        return self.module.Tensor(np.ascontiguousarray(array), device=device, dtype=dtype,
                                  requires_grad=False)

    def default_device(self):
        if self.is_own:
            return own.DEVICE
        ndl = self.module
        cpu = ndl.cpu()
        if hasattr(cpu, "enabled") and not cpu.enabled() and hasattr(ndl, "cpu_numpy"):
            return ndl.cpu_numpy()
        return cpu

    def __repr__(self):
        kind = "own" if self.is_own else "bundled" if self.bundled else "user"
        return f"<Framework {kind} {self.name}>"


OWN = Framework(own, "needle_qc (numpy)", bundled=False,
                caps={"dtypes": ("float16", "float32", "float64", "bfloat16", "int4", "int8",
                                 "uint8", "int32", "int64", "uint16"),
                      "zero_copy_to_numpy": False, "has_mod": False, "op_classes": {},
                      "tensor_has_bool": False})
"""needle_qc's own NumPy arrays: what compiled programs compute on."""

_CACHE = {}  # id(module) -> Framework


# ----------------------------------------------------------------------------- lookup

def bundled_dir():
    """Directory of the reference Needle shipped beside needle_qc."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(here, "needle")


def _is_bundled(module):
    path = getattr(module, "__file__", None)
    if path is None:
        return False
    try:
        return os.path.samefile(os.path.dirname(path), bundled_dir())
    except OSError:
        return False


def from_module(module):
    """The :class:`Framework` of a Needle root package (probed once, then cached)."""
    if isinstance(module, Framework):
        return module
    if module is own:
        return OWN
    cached = _CACHE.get(id(module))
    if cached is not None and cached.module is module:
        return cached
    missing = [name for name in _REQUIRED if not hasattr(module, name)]
    if missing:
        raise FrameworkError(f"{getattr(module, '__name__', module)!r} is not a Needle: it "
                             f"has no {', '.join(missing)} (needle_qc needs the course API: "
                             "needle.Tensor, needle.autograd, needle.nn, needle.ops, "
                             "needle.init)")
    path = os.path.dirname(getattr(module, "__file__", "") or "") or module.__name__
    framework = Framework(module, path, bundled=_is_bundled(module), caps=probe(module))
    _CACHE[id(module)] = framework
    return framework


def _looks_like_needle(module):
    return module is not None and all(hasattr(module, name) for name in _REQUIRED)


_TRACING_API = ("autograd.Value", "autograd.TensorTuple", "autograd.TensorTuple.make_from_op",
                "Tensor.make_from_op", "Tensor.make_const", "Tensor.detach", "Tensor.numpy",
                "Tensor.realize_cached_data", "nn.Module")
"""What the tracer hooks or reads, as dotted paths under the framework's root package."""


def require_tracing_api(fw):
    """FrameworkError listing every piece of the course API the tracer needs and ``fw``
    lacks (one message, not the first AttributeError)."""
    missing = []
    for dotted in _TRACING_API:
        obj = fw.module
        for part in dotted.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                missing.append(dotted)
                break
    if missing:
        raise FrameworkError(f"{fw.name} lacks what tracing needs: "
                             f"{', '.join('needle.' + m for m in missing)} (the course "
                             "autograd/nn API)")
    return fw


def root_module_of(obj):
    """The Needle package ``obj``'s class comes from: the first class in its MRO whose
    top-level package (in ``sys.modules``) has the course API (a model class lives in the
    user's own file; its ``nn.Module`` base lives in their Needle)."""
    for cls in type(obj).__mro__:
        module = sys.modules.get(cls.__module__.split(".")[0])
        if _looks_like_needle(module):
            return module
    raise FrameworkError(f"{type(obj).__name__} comes from no imported Needle: none of its "
                         "classes is defined in a package with needle.Tensor, needle.autograd, "
                         "needle.nn, needle.ops and needle.init; pass framework= the Needle "
                         "it was built with")


def framework_of(model, framework=None):
    """The framework ``model`` belongs to: ``framework`` if given (a module or Framework),
    else the package its class comes from. FrameworkError if that is no Needle or the model
    is not one of its Modules."""
    fw = from_module(framework if framework is not None else root_module_of(model))
    if not fw.is_own and not isinstance(model, fw.module.nn.Module) and \
            not isinstance(model, fw.module.Tensor):
        raise FrameworkError(f"{type(model).__name__} is not a {fw.name} nn.Module; pass "
                             "framework= the Needle it was built with")
    return fw


def framework_of_function(fn, framework=None):
    """The Needle a plain function of Tensors is written against: ``framework`` if given,
    else the Needle package a module in its globals belongs to (``ops``, ``ndl``...), else
    :func:`default` (the bundled Needle when it is loaded)."""
    if framework is not None:
        return from_module(framework)
    for value in getattr(fn, "__globals__", {}).values():
        name = getattr(value, "__name__", None)
        if isinstance(value, type(sys)) and name:
            module = sys.modules.get(name.split(".")[0])
            if _looks_like_needle(module):
                return from_module(module)
    fw = default()
    if not fw.is_own:
        return fw
    loaded = sys.modules.get("needle")  # the user's own, when theirs is the one imported
    if _looks_like_needle(loaded):
        return from_module(loaded)
    raise FrameworkError("cannot tell which Needle the function is written against; pass "
                         "framework=needle")


def framework_of_value(value):
    """The framework of a Tensor, or None for anything else (numpy arrays, tuples)."""
    if isinstance(value, (np.ndarray, tuple, list)) or value is None:
        return None
    if isinstance(value, own.Tensor):
        return OWN
    try:
        module = root_module_of(value)
        fw = from_module(module)
    except FrameworkError:
        return None
    return fw if isinstance(value, fw.module.Tensor) else None


def default():
    """The framework of a run nobody bound: the bundled Needle when ``import needle`` gives
    it, else needle_qc's own arrays (never a user's framework by accident)."""
    module = sys.modules.get("needle")
    if module is None:
        try:
            import needle as module
        except ImportError:
            return OWN
    return from_module(module) if _is_bundled(module) else OWN


# ----------------------------------------------------------------------------- binding

def current():
    """The framework bound by the innermost :func:`using`, else :func:`default`."""
    fw = _ACTIVE.get()
    return fw if fw is not None else default()


@contextlib.contextmanager
def using(framework):
    """Bind ``framework`` (module or Framework) for the op table's evaluators."""
    token = _ACTIVE.set(from_module(framework))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


# ----------------------------------------------------------------------------- probing

def probe(module):
    """What a Needle offers, checked once: dtypes its Tensor holds, whether its backend's
    ``to_numpy`` is zero-copy, whether its device has ``.mod``, its op classes and their
    constructor parameters, and whether its Tensor defines ``__bool__``."""
    import inspect

    ops = module.ops
    op_base = getattr(module.autograd, "Op", None)
    classes = {}
    for name in dir(ops) if op_base is not None else ():
        cls = getattr(ops, name)
        if isinstance(cls, type) and issubclass(cls, op_base):
            try:
                params = tuple(inspect.signature(cls.__init__).parameters)[1:]
            except (TypeError, ValueError):
                params = ()
            classes[name] = tuple(p for p in params if p not in ("args", "kwargs"))
    device = _probe_device(module)
    return {"dtypes": _probe_dtypes(module, device), "has_mod": hasattr(device, "mod"),
            "zero_copy_to_numpy": _probe_zero_copy(device), "op_classes": classes,
            "tensor_has_bool": any("__bool__" in vars(c) for c in module.Tensor.__mro__
                                   if c is not object)}


def _probe_device(module):
    try:
        return from_module_device(module)
    except Exception:  # noqa: BLE001 (a broken device factory only narrows what we use)
        return None


def from_module_device(module):
    cpu = module.cpu()
    if hasattr(cpu, "enabled") and not cpu.enabled() and hasattr(module, "cpu_numpy"):
        return module.cpu_numpy()
    return cpu


def _probe_dtypes(module, device):
    held = []
    for dtype in ("float32", "float16", "int8", "uint8", "int32"):
        try:
            t = module.Tensor(np.zeros((2,), dtype), device=device, dtype=dtype,
                              requires_grad=False)
            if str(np.dtype(t.numpy().dtype).name) == dtype:
                held.append(dtype)
        except Exception:  # noqa: BLE001 (a course NDArray asserts float32)
            continue
    return tuple(held)


def _probe_zero_copy(device):
    mod = getattr(device, "mod", None)
    if mod is None or not all(hasattr(mod, n) for n in ("Array", "to_numpy", "from_numpy")):
        return False
    try:
        buf = mod.Array(4)
        mod.from_numpy(np.zeros(4, np.float32), buf)
        view = mod.to_numpy(buf, (4,), (1,), 0)
        view[:] = np.arange(1, 5, dtype=np.float32)
        return bool(np.array_equal(mod.to_numpy(buf, (4,), (1,), 0),
                                   np.arange(1, 5, dtype=np.float32)))
    except Exception:  # noqa: BLE001 (read-only or copying backends)
        return False
