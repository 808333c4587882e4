"""The frontend: which Needle a model belongs to and what it offers (see framework.py)."""
from needle_qc.frontend import user_op  # noqa: E402, F401 (registers the user_op IR op)
from needle_qc.frontend.framework import (
    OWN,
    Framework,
    FrameworkError,
    current,
    default,
    framework_of,
    framework_of_value,
    from_module,
    probe,
    using,
)

__all__ = ["OWN", "Framework", "FrameworkError", "current", "default", "framework_of",
           "framework_of_value", "from_module", "probe", "using"]
