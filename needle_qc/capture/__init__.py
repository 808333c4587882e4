"""Capture: trace a Needle model's forward pass into a Graph."""
from needle_qc.capture.tracer import trace

__all__ = ["trace"]
