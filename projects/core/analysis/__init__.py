"""Measuring helpers of the benchmark tools (throughput, process memory)."""
