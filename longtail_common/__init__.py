"""Cross-cutting pieces shared by every Longtail service: ports and their backends
(adapters), configuration, telemetry, the gRPC server helper and the `longtail` CLI."""
