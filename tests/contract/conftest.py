"""Backends every port contract suite runs against.

Embedded backends always run. Real backends (Kafka, Cassandra-as-Scylla, S3Proxy) are
added by tests/real_servers.py fixtures when the servers can be started; see
tests/conftest.py for how a missing server is a skip locally and a failure in CI.
"""
