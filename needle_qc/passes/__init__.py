"""Generic graph passes (fold-batchnorm, fuse-activations, cse, dce...) and the pass registry."""
from needle_qc.passes.registry import (
    BUILTIN_MODULES,
    FLOAT_PIPELINE,
    PassError,
    PassResult,
    PassRun,
    get_pass,
    list_passes,
    register_pass,
    run_passes,
    unregister_pass,
)

__all__ = ["BUILTIN_MODULES", "FLOAT_PIPELINE", "PassError", "PassResult", "PassRun", "get_pass",
           "list_passes", "register_pass", "run_passes", "unregister_pass"]
