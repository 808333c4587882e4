"""needle_qc: post-training quantization compiler for Needle models."""
