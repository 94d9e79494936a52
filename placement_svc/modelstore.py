"""Where trained placement models live: the object store's `placement` bucket.

The daily job saves `models/latest.pkl` (and a dated copy); the placement service loads
the latest one for cold-start decisions. Only placement_svc writes this bucket, so loading
its pickles is loading our own artefacts. Works on every object backend (FS, MinIO/S3), so
the daily job and the service may run on different machines.
"""
from __future__ import annotations

import logging
import os
import pickle
import tempfile
import time

from longtail_common.ports import NotFoundError, ObjectStore

log = logging.getLogger("placement_svc.modelstore")
MODEL_BUCKET = "placement"
LATEST_KEY = "models/latest.pkl"


def save_model(objects: ObjectStore, model, day: str) -> str:
    objects.ensure_bucket(MODEL_BUCKET)
    with tempfile.TemporaryDirectory(prefix="lt-model-") as tmp:
        path = os.path.join(tmp, "model.pkl")
        with open(path, "wb") as fh:
            pickle.dump(model, fh)
        objects.put_file(MODEL_BUCKET, f"models/{day}.pkl", path)
        objects.put_file(MODEL_BUCKET, LATEST_KEY, path)
    return LATEST_KEY


def load_latest(objects: ObjectStore):
    """The latest saved model, or None when there is none."""
    try:
        if objects.stat(MODEL_BUCKET, LATEST_KEY) is None:
            return None
        with tempfile.TemporaryDirectory(prefix="lt-model-") as tmp:
            path = os.path.join(tmp, "model.pkl")
            objects.download_file(MODEL_BUCKET, LATEST_KEY, path)
            with open(path, "rb") as fh:
                return pickle.load(fh)
    except NotFoundError:
        return None


class LatestModel:
    """Caches the latest model, re-checking the store's etag at most every `ttl_s`."""

    def __init__(self, objects: ObjectStore, ttl_s: float = 60.0):
        self.objects, self.ttl_s = objects, ttl_s
        self._model, self._etag, self._checked = None, None, -1e18

    def get(self):
        now = time.monotonic()
        if now - self._checked < self.ttl_s:
            return self._model
        self._checked = now
        try:
            info = self.objects.stat(MODEL_BUCKET, LATEST_KEY)
            if info is None:
                self._model, self._etag = None, None
            elif info.etag != self._etag or self._model is None:
                self._model, self._etag = load_latest(self.objects), info.etag
        except Exception as exc:  # noqa: BLE001 - a broken model file must not stop publishing
            log.warning("cannot load the latest placement model: %s", exc)
        return self._model
