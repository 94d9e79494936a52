"""Cross-cutting pieces every Longtail service uses at run time: ports and their backends
(adapters), configuration, telemetry and the gRPC server helper."""
