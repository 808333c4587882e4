"""``enable_seed_api(needle)``: the proposal's quantization API on any course Needle.

Gives the framework passed in a ``quantization`` submodule (``insert_observer`` and its
proposal spelling ``insert_obserserver``, ``convert``, ``quantize``, ``Quantizer``...) and
``nn.Module.quantize(data_type=...)``, exactly as the bundled Needle has them. The module is
the bundled ``needle/quantization.py`` loaded under the framework's name; it reaches the
framework only through the model (``needle_qc.frontend``), so nothing of the bundled Needle is
imported.
"""
import importlib.util
import os
import sys

from needle_qc.frontend.framework import FrameworkError, bundled_dir, from_module


def enable_seed_api(needle):
    """Install ``needle.quantization`` and ``needle.nn.Module.quantize`` on ``needle`` (the
    root package of a course Needle); returns the quantization module. Idempotent; the
    bundled Needle already has both and is returned as is."""
    fw = from_module(needle)
    if fw.is_own:
        raise FrameworkError("enable_seed_api: pass a Needle package (import needle), not "
                             "needle_qc's own arrays")
    existing = getattr(needle, "quantization", None)
    if existing is not None and hasattr(existing, "insert_observer"):
        module = existing
    else:
        module = _load_quantization(f"{needle.__name__}.quantization")
        needle.quantization = module
    if not hasattr(needle.nn.Module, "quantize"):
        needle.nn.Module.quantize = _make_quantize_method(module)
    return module


def _load_quantization(name):
    path = os.path.join(bundled_dir(), "quantization.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _make_quantize_method(quantization):
    def quantize(self, data_type="int8", **kwargs):
        """Weight-only quantized copy of this module (``quantization.quantize``)."""
        return quantization.quantize(self, data_type=data_type, **kwargs)
    return quantize
