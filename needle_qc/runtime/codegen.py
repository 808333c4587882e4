"""The run loop as one generated straight-line function (torch.fx-style code generation).

A compiled Program is a fixed list of calls, so the interpreter loop over it (a tuple unpack, a
list comprehension of dict lookups, a dict store and the frees per step: ~0.7 us a step here,
more than many of the kernels it calls) can be unrolled once at compile into Python source::

    def run(v0, f0=f0, f1=f1, c0=c0):
        v1 = f0(v0, c0)
        del v0
        v2 = f1(v1)
        del v1
        return [v2]

Every value is a local variable (the fastest Python storage), every kernel and constant a default
argument (bound once, no global lookup), and ``del`` releases an activation right after its last
use exactly as the liveness plan of :meth:`Program.frees` does, so peak memory is unchanged.
The same calls run in the same order on the same arrays: outputs are identical to the loop's,
which stays as the debug path (:meth:`CompiledModel.node_values`, saturation counting).
"""

import keyword


def straight_line(plan, inputs, constants, outputs):
    """A function ``run(*input_arrays) -> [output arrays]`` equivalent to the loop::

        env = {**constants, **dict(zip(inputs, input_arrays))}
        for fn, args, out, frees in plan:
            env[out] = fn(*[env[a] for a in args]); [env.pop(f) for f in frees]
        return [env[o] for o in outputs]

    ``plan`` is ``[(fn, arg names, output name, names freed after the call)]``; ``inputs``
    the input value names in call order; ``constants`` ``{name: array}``.
    """
    names = _Names()
    bound = {}  # default-argument name -> object
    args = [names.local(name) for name in inputs]
    body = []
    for index, (fn, arg_names, output, frees) in enumerate(plan):
        fname = f"f{index}"
        bound[fname] = fn
        operands = []
        for name in arg_names:
            if name in constants and not names.known(name):
                cname = names.constant(name)
                bound.setdefault(cname, constants[name])
                operands.append(cname)
            else:
                operands.append(names.use(name))
        body.append(f"    {names.local(output)} = {fname}({', '.join(operands)})")
        dropped = [names.use(f) for f in frees if names.known(f)]
        if dropped:
            body.append(f"    del {', '.join(dropped)}")
    results = []
    for name in outputs:
        if names.known(name):
            results.append(names.use(name))
        else:  # an output that is a constant (or an input passed straight through)
            cname = names.constant(name)
            bound.setdefault(cname, constants[name])
            results.append(cname)
    body.append(f"    return [{', '.join(results)}]")
    params = args + [f"{k}={k}" for k in bound]
    source = f"def run({', '.join(params)}):\n" + "\n".join(body) + "\n"
    namespace = dict(bound)
    exec(compile(source, "<needle_qc compiled run>", "exec"), namespace)  # noqa: S102
    run = namespace["run"]
    run.source = source
    return run


class _Names:
    """Python identifiers for value names: ``v<k>`` for values computed or passed in,
    ``c<k>`` for constants (value names are IR names: dots, digits first, keywords...)."""

    def __init__(self):
        self._locals = {}
        self._constants = {}

    def local(self, name):
        ident = self._locals.setdefault(name, f"v{len(self._locals)}")
        assert ident.isidentifier() and not keyword.iskeyword(ident)
        return ident

    def known(self, name):
        return name in self._locals

    def use(self, name):
        try:
            return self._locals[name]
        except KeyError:
            raise ValueError(f"generated run loop: value %{name} is used before any step "
                             "computes it (a lowering bug: the step order is broken)") from None

    def constant(self, name):
        return self._constants.setdefault(name, f"c{len(self._constants)}")
