"""Benchmarks: speed is checked here, never by timed assertions in tests."""
