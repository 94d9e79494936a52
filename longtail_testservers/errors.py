"""The errors a test server raises when it cannot be fetched, started or stopped."""
from __future__ import annotations

MISSING_JAVA_PREFIX = "Java 17+ and Maven are needed for local servers: "


class TestServerError(RuntimeError):
    """A server could not be fetched, started or stopped (the message says why)."""

    __test__ = False  # not a pytest test class


class JavaUnavailableError(TestServerError):
    """Java 17+ (or Maven, while the jars are not cached) is missing."""
