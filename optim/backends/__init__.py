"""Wrappers around the libraries producers share (ONNX export, ONNX Runtime sessions and quantization, PT2E,
per-layer sensitivity). A producer module registers recipe steps; these modules only call libraries."""
