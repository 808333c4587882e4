"""Tiny graphs with fixed weights for the quantization pass tests (an MLP and a conv net)."""

import numpy as np

from needle_qc.ir.graph import Graph
from needle_qc.ir.interpreter import Interpreter

MLP = """\
%x = placeholder() : f32[N,4]
%fc1.weight = param() {tensor="fc1.weight"} : f32[4,8]
%fc1.bias = param() {tensor="fc1.bias"} : f32[8]
%fc1 = linear(%x, %fc1.weight, %fc1.bias) : f32[N,8]
%relu = relu(%fc1) : f32[N,8]
%fc2.weight = param() {tensor="fc2.weight"} : f32[8,3]
%fc2.bias = param() {tensor="fc2.bias"} : f32[3]
%fc2 = linear(%relu, %fc2.weight, %fc2.bias) : f32[N,3]
return %fc2"""

CONVNET = """\
%x = placeholder() : f32[N,1,6,6]
%conv1.weight = param() {tensor="conv1.weight"} : f32[3,3,1,4]
%conv1.bias = param() {tensor="conv1.bias"} : f32[4]
%conv1 = conv2d(%x, %conv1.weight, %conv1.bias) {stride=1, padding=1} : f32[N,4,6,6]
%relu = relu(%conv1) : f32[N,4,6,6]
%conv2.weight = param() {tensor="conv2.weight"} : f32[3,3,4,4]
%conv2.bias = param() {tensor="conv2.bias"} : f32[4]
%conv2 = conv2d(%relu, %conv2.weight, %conv2.bias) {stride=2, padding=1} : f32[N,4,3,3]
%relu_1 = relu(%conv2) : f32[N,4,3,3]
%flatten = reshape(%relu_1) {shape=(N, 36)} : f32[N,36]
%fc.weight = param() {tensor="fc.weight"} : f32[36,3]
%fc.bias = param() {tensor="fc.bias"} : f32[3]
%fc = linear(%flatten, %fc.weight, %fc.bias) : f32[N,3]
return %fc"""

MODULE_OF = {"fc1": "fc1", "fc2": "fc2", "conv1": "conv1", "conv2": "conv2", "fc": "fc"}


def build(text, seed=0):
    """Parse ``text``, fill its params with fixed uniform weights, set module paths."""
    g = Graph.parse(text)
    rng = np.random.default_rng(seed)
    for node in g.nodes:
        if node.op == "param":
            fan_in = int(np.prod(node.meta["shape"][:-1])) if len(node.meta["shape"]) > 1 else 4
            bound = 1.0 / np.sqrt(fan_in)
            g.tensors[node.attrs["tensor"]] = rng.uniform(
                -bound, bound, node.meta["shape"]).astype(np.float32)
        layer = node.name.split(".")[0]
        if layer in MODULE_OF:
            node.meta["module_path"] = MODULE_OF[layer]
    return g.lint()


def mlp():
    return build(MLP)


def convnet():
    return build(CONVNET, seed=1)


def batches(shape, count=8, seed=2):
    """Fixed calibration batches of standard normal data."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(count)]


class Recorder(Interpreter):
    """Interpreter that keeps every node's value as numpy, by node name."""

    def __init__(self, graph):
        super().__init__(graph)
        self.values = {}

    def call_op(self, node, inputs):
        out = super().call_op(node, inputs)
        if not isinstance(node.meta.get("dtype"), tuple):
            self.values[node.name] = out.numpy()
        return out


def node_values(graph, x):
    """Every node's value for input ``x`` (numpy), by node name."""
    rec = Recorder(graph)
    rec.run(x)
    return rec.values


def weight_bytes(graph, keys):
    """Bytes of the stored tensors ``keys`` of a graph."""
    return sum(int(graph.tensors[k].nbytes) for k in keys)
