"""Graph <-> text: one node per line, parsed back exactly (``parse(str(g))`` prints the same).

Grammar (``*`` repeats, ``?`` optional, quoted text is literal)::

    graph    := (line "\\n")*                  blank lines and "#" comments are skipped
    line     := node | return
    node     := "%" NAME "=" OP "(" operands? ")" attrs? (":" type)?
    return   := "return" results?              the output node (always named "output")
    results  := result ("," result)*           two or more results: a tuple
    result   := "%" NAME | "(" results? ","? ")"   parentheses nest; "(%a,)" is a 1-tuple
    operands := "%" NAME ("," "%" NAME)*
    attrs    := "{" (KEY "=" value ("," KEY "=" value)*)? "}"
    value    := INT | FLOAT | STRING | "True" | "False" | "None" | DIM
              | "(" (value ("," value)* ","?)? ")" | "[" (value ("," value)*)? "]"
              | "{" (KEY "=" value ("," KEY "=" value)*)? "}"        (a dict)
    type     := tensor | "(" tensor ("," tensor)* ","? ")"   (a tuple value)
    tensor   := DTYPE "[" (dim ("," dim)*)? "]" attrs?   attrs here are the node's qparams
    dim      := INT | "N" | INT "*N"                   N is the batch size
    NAME     := [A-Za-z0-9_.]+       OP, KEY := [A-Za-z_][A-Za-z0-9_]*
    INT      := -?[0-9]+             FLOAT := Python repr of a float (1e-05, 0.5, inf, nan)
    STRING   := a JSON string        DIM := "N" | INT "*N" (a symbolic dim inside attrs)
    DTYPE    := f32 f16 bf16 f64 i8 u8 i16 i32 i64 i4 u4 bool, or any full dtype name

Example::

    %x = placeholder() : f32[N,1,28,28]
    %conv1.weight = param() {tensor="conv1.weight"} : f32[3,3,1,16]
    %conv1 = conv2d(%x, %conv1.weight) {stride=1, padding=1} : f32[N,16,28,28]
    %q = quantize(%conv1) {dtype="uint8"} : u8[N,16,28,28]{s=0.0123, z=128}
    return %q
"""

import json
import re

from needle_qc import opset
from needle_qc.errors import IRError

SHORT_DTYPES = {
    "float32": "f32", "float16": "f16", "bfloat16": "bf16", "float64": "f64", "int8": "i8",
    "uint8": "u8", "int16": "i16", "int32": "i32", "int64": "i64", "int4": "i4", "uint4": "u4",
    "bool": "bool",
}
LONG_DTYPES = {short: long for long, short in SHORT_DTYPES.items()}

# ----------------------------------------------------------------------------- printing


def format_value(value):
    """One attr/qparams value in the text syntax (floats by repr, so they round-trip)."""
    if value is None or isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return value if opset.is_symbolic(value) else json.dumps(value)
    if isinstance(value, tuple):
        inner = ", ".join(format_value(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return format_attrs(value)
    raise IRError(f"cannot print attr value {value!r} of type {type(value).__name__}")


_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def format_attrs(attrs):
    """``{k=v, ...}``; keys must be identifiers so that the text parses back."""
    for key in attrs:
        if not isinstance(key, str) or not _KEY.match(key):
            raise IRError(f"cannot print attr key {key!r}: keys must be identifiers")
    if not attrs:
        return "{}"
    return "{" + ", ".join(f"{k}={format_value(v)}" for k, v in attrs.items()) + "}"


def format_tensor_type(shape, dtype, qparams=None):
    """``f32[N,16,28,28]``, with ``{s=..., z=...}`` appended when ``qparams`` is given."""
    dims = ",".join(opset.format_dim(d) for d in shape)
    text = f"{SHORT_DTYPES.get(dtype, dtype)}[{dims}]"
    return text + format_attrs(qparams) if qparams else text


def format_type(meta):
    """The type after ``:`` for a node's meta, or None when the meta has no shape."""
    shape, dtype = meta.get("shape"), meta.get("dtype")
    if shape is None:
        return None
    if isinstance(dtype, tuple):
        parts = [format_tensor_type(s, d) for s, d in zip(shape, dtype)]
        return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"
    return format_tensor_type(shape, dtype, meta.get("qparams"))


def _format_result(structure, inputs):
    if isinstance(structure, int):
        return f"%{inputs[structure].name}"
    inner = ", ".join(_format_result(s, inputs) for s in structure)
    return f"({inner},)" if len(structure) == 1 else f"({inner})"


def _format_return(node):
    structure = node.attrs.get("structure", tuple(range(len(node.inputs))))
    if isinstance(structure, int):
        return f"return %{node.inputs[structure].name}"
    if len(structure) >= 2:
        return "return " + ", ".join(_format_result(s, node.inputs) for s in structure)
    return "return " + _format_result(structure, node.inputs)


def format_node(node):
    """The text line of one node."""
    if node.op == "output":
        return _format_return(node)
    args = ", ".join(f"%{i.name}" for i in node.inputs)
    line = f"%{node.name} = {node.op}({args})"
    if node.attrs:
        line += " " + format_attrs(node.attrs)
    type_text = format_type(node.meta)
    return line + (f" : {type_text}" if type_text else "")


def format_graph(graph):
    """The whole graph, one line per node."""
    return "\n".join(format_node(n) for n in graph.nodes)


# ----------------------------------------------------------------------------- tokens

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<ref>%[A-Za-z0-9_.]+)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<symdim>[0-9]+\*N\b)
  | (?P<number>-?(?:inf\b|nan\b|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?))
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[()\[\]{},=:])
""", re.VERBOSE)


_KIND_NAMES = {"ref": "a %name", "word": "a name", "number": "a number", "string": "a string"}


class _Tokens:
    """A cursor over the tokens of one line, with errors that point at the column."""

    def __init__(self, line, lineno):
        self.line, self.lineno = line, lineno
        self.items = list(self._scan(line))
        self.pos = 0

    def _scan(self, line):
        index = 0
        while index < len(line):
            match = _TOKEN.match(line, index)
            if match is None:
                self.fail(f"unexpected character {line[index]!r}", index)
            if match.lastgroup != "space":
                yield match.lastgroup, match.group(), index
            index = match.end()

    def fail(self, message, column=None):
        if column is None:
            column = self.items[self.pos][2] if self.pos < len(self.items) else len(self.line)
        raise IRError(f"line {self.lineno}, column {column + 1}: {message}\n  {self.line}")

    def peek(self):
        return self.items[self.pos][:2] if self.pos < len(self.items) else (None, None)

    def next(self, kind=None, text=None):
        got_kind, got_text = self.peek()
        if got_kind is None or (kind and got_kind != kind) or (text and got_text != text):
            want = repr(text) if text else _KIND_NAMES.get(kind, "a token")
            self.fail(f"expected {want}, found {got_text or 'end of line'!r}")
        self.pos += 1
        return got_text

    def accept(self, text):
        if self.peek()[1] == text:
            self.pos += 1
            return True
        return False

    def done(self):
        if self.pos < len(self.items):
            self.fail(f"unexpected {self.items[self.pos][1]!r}")


# ----------------------------------------------------------------------------- parsing values

_WORDS = {"True": True, "False": False, "None": None, "N": "N"}


def _parse_value(tok):
    kind, text = tok.peek()
    if kind == "number":
        tok.next()
        return int(text) if re.fullmatch(r"-?[0-9]+", text) else float(text)
    if kind == "string":
        return json.loads(tok.next())
    if kind == "symdim":
        return tok.next()
    if kind == "word" and text in _WORDS:
        tok.next()
        return _WORDS[text]
    if text == "(":
        return _parse_tuple(tok)
    if text == "[":
        tok.next()
        return _parse_items(tok, "]", _parse_value)
    if text == "{":
        return _parse_attrs(tok)
    tok.fail(f"expected a value, found {text or 'end of line'!r}")


def _parse_items(tok, close, parse_one):
    items = []
    while not tok.accept(close):
        items.append(parse_one(tok))
        if not tok.accept(","):
            tok.next(text=close)
            break
    return items


def _parse_paren_tuple(tok, parse_one, example):
    """``(a, b)`` -> tuple of ``parse_one`` results; ``(a)`` is refused (``example`` shows how)."""
    tok.next(text="(")
    items, trailing = [], False
    while not tok.accept(")"):
        items.append(parse_one(tok))
        trailing = tok.accept(",")
        if not trailing:
            tok.next(text=")")
            break
    if len(items) == 1 and not trailing:
        tok.fail(f"a one-element tuple needs a trailing comma: {example}")
    return tuple(items)


def _parse_tuple(tok):
    return _parse_paren_tuple(tok, _parse_value, "(x,)")


def _parse_attrs(tok):
    tok.next(text="{")
    attrs = {}
    while not tok.accept("}"):
        key = tok.next("word")
        tok.next(text="=")
        if key in attrs:
            tok.fail(f"attr {key!r} given twice")
        attrs[key] = _parse_value(tok)
        if not tok.accept(","):
            tok.next(text="}")
            break
    return attrs


# ----------------------------------------------------------------------------- parsing types

def _parse_dim(tok):
    kind, text = tok.peek()
    if kind == "symdim" or (kind == "word" and text == "N"):
        return tok.next()
    if kind == "number" and re.fullmatch(r"[0-9]+", text):
        return int(tok.next())
    tok.fail(f"expected a dim (int, N or k*N), found {text or 'end of line'!r}")


def _parse_tensor_type(tok):
    name = tok.next("word")
    dtype = LONG_DTYPES.get(name, name)
    tok.next(text="[")
    shape = tuple(_parse_items(tok, "]", _parse_dim))
    qparams = _parse_attrs(tok) if tok.peek()[1] == "{" else None
    return shape, dtype, qparams


def _parse_type(tok):
    if not tok.accept("("):
        shape, dtype, qparams = _parse_tensor_type(tok)
        meta = {"shape": shape, "dtype": dtype}
        return {**meta, "qparams": qparams} if qparams is not None else meta
    parts = _parse_items(tok, ")", _parse_tensor_type)
    return {"shape": tuple(p[0] for p in parts), "dtype": tuple(p[1] for p in parts)}


# ----------------------------------------------------------------------------- parsing lines

def _parse_node_line(tok, graph):
    name = tok.next("ref")[1:]
    tok.next(text="=")
    if name in graph._by_name:
        tok.fail(f"%{name} is defined twice", 0)
    if name == "output":
        tok.fail("%output is reserved for the return line", 0)
    op_column = tok.items[tok.pos][2] if tok.pos < len(tok.items) else len(tok.line)
    op = tok.next("word")
    try:
        opset.get_op(op)
    except IRError as e:
        tok.fail(str(e), op_column)
    tok.next(text="(")
    inputs = _parse_items(tok, ")", lambda t: _lookup(t, graph))
    attrs = _parse_attrs(tok) if tok.peek()[1] == "{" else {}
    meta = _parse_type(tok) if tok.accept(":") else {}
    tok.done()
    _add_node(graph, name, op, inputs, attrs, meta)


def _add_node(graph, name, op, inputs, attrs, meta):
    from needle_qc.ir.graph import Node

    node = Node(graph, name, op, inputs, attrs, meta)
    graph._nodes.append(node)
    graph._by_name[name] = node


def _lookup(tok, graph):
    column = tok.items[tok.pos][2] if tok.pos < len(tok.items) else None
    ref = tok.next("ref")
    if ref[1:] not in graph._by_name:
        tok.fail(f"{ref} is used before it is defined", column)
    return graph._by_name[ref[1:]]


def _parse_result(tok, graph, flat):
    if tok.peek()[0] == "ref":
        flat.append(_lookup(tok, graph))
        return len(flat) - 1
    return _parse_paren_tuple(tok, lambda t: _parse_result(t, graph, flat), "(%x,)")


def _parse_return_line(tok, graph):
    tok.next(text="return")
    flat, structure = [], []
    while tok.peek()[0] is not None:
        structure.append(_parse_result(tok, graph, flat))
        if not tok.accept(","):
            break
    tok.done()
    _add_node(graph, "output", "output", flat,
              {"structure": structure[0] if len(structure) == 1 else tuple(structure)},
              {})


def parse_graph(text, tensors=None):
    """Build a Graph from its text form; ``tensors`` supplies param/constant values."""
    from needle_qc.ir.graph import Graph

    graph = Graph()
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if graph.output_node is not None:
            raise IRError(f"line {lineno}: nothing may follow the return line\n  {line}")
        tok = _Tokens(line, lineno)
        if tok.peek() == ("word", "return"):
            _parse_return_line(tok, graph)
        else:
            _parse_node_line(tok, graph)
    if tensors:
        keys = {n.attrs.get("tensor") for n in graph.nodes if n.op in ("param", "constant")}
        graph.tensors = {k: v for k, v in tensors.items() if k in keys}
    return graph
