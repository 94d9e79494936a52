"""metadata_svc: the source of truth for videos and channels (gRPC MetadataService).

Its one job: store and serve Video resources over the MetadataStore port (SQLite
embedded, ScyllaDB in production), with field-mask updates and etag preconditions so
status transitions happen exactly once.
"""
