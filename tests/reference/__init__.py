"""Reference implementations and shared fixtures for the tests and benchmarks (not part of the package)."""
