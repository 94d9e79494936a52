"""Cross-cutting pieces every Longtail service uses at run time, and nothing else: the ports
(ports.py) and their backends (adapters/), configuration, telemetry, the at-least-once
consume loop (consumer.py), the gRPC helpers (grpc_server.py), the one service skeleton
every service starts from (service.py: run_service), and the v1 string/enum pairs
(proto_enums.py). It imports no service, nor the CLI or the test servers."""
