"""The builder registry: op name -> ``builder(ctx, node)``, filled by ``@builder`` next to each
builder's code."""

from needle_qc.errors import IRError

BUILDERS = {}
"""op name -> builder(ctx, node) returning an Impl, (Impl, float alternative) or None (= fall
back to the op table's evaluation)."""


def register_builder(op, fn, *, replace=False):
    """Make ``fn`` the builder of ``op``; re-registering an op needs ``replace=True``."""
    if op in BUILDERS and not replace:
        raise IRError(f"op {op!r} already has a builder ({BUILDERS[op].__name__})")
    BUILDERS[op] = fn
    return fn


def unregister_builder(op):
    """Remove the builder of ``op`` (for tests that add throwaway builders)."""
    BUILDERS.pop(op)


def builder(*ops):
    """Decorator: ``@builder("qlinear")`` registers the function as the builder of those ops."""
    def register(fn):
        for op in ops:
            register_builder(op, fn)
        return fn
    return register
