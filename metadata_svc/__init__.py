"""metadata_svc: the source of truth for videos, channels and accounts (gRPC MetadataService
and AccountService).

Its one job: store and serve the platform's records over the MetadataStore and
AccountStore ports (SQLite embedded, ScyllaDB in production): videos, with field-mask
updates and etag preconditions so status transitions happen exactly once; channels and
their owners; accounts, password links and personal API tokens (rules in `accounts`).
"""
