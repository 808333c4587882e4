"""Exceptions raised by the IR, the tracer and the interpreter."""


class NeedleQCError(Exception):
    """Base class of every needle_qc error."""


class IRError(NeedleQCError, ValueError):
    """A graph breaks an IR invariant, or text/ops/attrs given to the IR are malformed."""


class TraceError(NeedleQCError):
    """The tracer cannot capture a model faithfully.

    The message names the module path (``layer2.0.conv``) and the user's ``file:line``.
    """
