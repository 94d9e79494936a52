"""gateway: the thin REST front door (FastAPI) over the gRPC services.

Its one job: speak HTTP/JSON and tus to clients, call metadata_svc and upload_svc over
gRPC, and in the embedded setup serve stream bytes from origin (and the edges).
"""
