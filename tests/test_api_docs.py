"""The gateway's OpenAPI document is well formed where FastAPI alone would not make it so:
every operation has an operationId of its own (clients generated from the document name
their methods after it), GET and HEAD of one path included."""
from __future__ import annotations

import warnings

from longtail_common.config import Config
from gateway.app import create_app


def test_every_operation_has_its_own_operation_id(tmp_path):
    cfg = Config(data_dir=str(tmp_path / "lt"))
    cfg.mesh.tls = False  # no service runs: building the document calls none
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # FastAPI warns of a duplicate operationId
        document = create_app(cfg).openapi()
    ids = [(method, path, operation["operationId"])
           for path, operations in document["paths"].items() for method, operation in operations.items()]
    by_id: dict[str, list] = {}
    for method, path, operation_id in ids:
        by_id.setdefault(operation_id, []).append((method, path))
    assert {i: where for i, where in by_id.items() if len(where) > 1} == {}
    # HEAD is still documented beside GET where a route answers both.
    assert {"get", "head"} <= set(document["paths"]["/origin/{key}"])
