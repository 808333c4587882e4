"""The quantization passes: insert-observers, convert (QDQ), fuse-qdq, weight-only, dynamic."""
