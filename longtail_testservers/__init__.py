"""Real Kafka, Cassandra, S3Proxy and Keycloak servers on loopback, from Maven Central: a
development package for the tests and `longtail services`, not shipped in the service image.

The real backends (Kafka topics, Scylla/Cassandra metadata, S3 objects) are tested
against actual servers, not mocks. With no Docker on the machines, the servers are
plain JVM processes whose jars Maven fetches from Central once:

* `kafka`: Apache Kafka 4.x in KRaft combined mode (one process is broker and controller);
* `cassandra`: Apache Cassandra 5.0.x, which speaks the CQL protocol scylla-driver uses
  (ScyllaDB itself is not on Maven Central);
* `s3proxy`: S3Proxy with its filesystem blob store, which speaks the S3 API minio uses;
* `keycloak`: Keycloak in dev mode (Java 21+) with the test realm of deploy/keycloak/, the
  OpenID Connect provider the sign-in is tested against.

`jars` finds Java and fetches the jars, `process` runs one server's JVM, `cluster` starts
and stops them all (`state` records them in servers.json), `cli` is the command line.

Ports are picked free on 127.0.0.1. Each `start_*` returns only once the server really
answers a client request (Kafka metadata, a CQL query, an S3 bucket list, the realm's OIDC
discovery), and raises `TestServerError` with the tail of the server's log otherwise.

    servers = cluster.start_all(dir)      # writes dir/longtail.toml and dir/servers.json
    ...
    cluster.stop_all(dir)

Command line (wired as `longtail services start|stop --dir DIR`):

    python -m longtail_testservers start --dir DIR
    python -m longtail_testservers stop --dir DIR
"""
