"""Shared test setup.

The real-server fixtures (Kafka, Cassandra, S3Proxy from Maven Central jars) live in
tests/real_servers.py. A suite that needs them is skipped, with the reason printed, on a
machine without Java; with CI set, that is a failure instead.
"""
import importlib.util

if importlib.util.find_spec("tests.real_servers") is not None:
    pytest_plugins = ["tests.real_servers"]
