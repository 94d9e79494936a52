"""Process plumbing shared by services: logging, and processes that end with their parent."""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import threading
import time

from opentelemetry import trace

log = logging.getLogger(__name__)


class _JsonFormatter(logging.Formatter):
    """One JSON object per line, so log shippers need no parsing rules."""

    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:  # lets a log line be joined to its trace in the SRE's tools
            entry["trace_id"], entry["span_id"] = f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"
        for key in ("trace_id", "span_id", "video_id"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


# util-linux's setpriv sets PR_SET_PDEATHSIG between fork and exec. Not a preexec_fn:
# Python code in the forked child runs the at-fork handlers of a process full of gRPC
# threads, and 18 of 400 such children died of SIGABRT (the parent's gRPC lost file
# descriptors besides): ffmpeg runs failed at random as "killed by signal 6".
_SETPRIV = shutil.which("setpriv") if sys.platform.startswith("linux") else None


def dying_with_parent(args: list[str]) -> list[str]:
    """`args` as a command whose process gets SIGKILL when the thread that started it dies
    (PR_SET_PDEATHSIG, kept across exec), so a killed worker leaves no orphan encoding
    ffmpeg; as they are where setpriv is missing. Not for the launcher's services (see
    `stop_when_parent_dies`)."""
    return [_SETPRIV, "--pdeathsig", "KILL", "--", *args] if _SETPRIV else list(args)


PARENT_PID_ENV = "LONGTAIL_PARENT_PID"


def stop_when_parent_dies(poll_s: float = 1.0) -> None:
    """When started by a launcher (which sets LONGTAIL_PARENT_PID), SIGTERM ourselves once it
    is gone, so a launcher killed outright leaves no service behind still in its consumer
    groups (it would take messages meant for the next platform's services). SIGTERM gives
    the service's own graceful shutdown. A polling thread, not PR_SET_PDEATHSIG: that needs a
    preexec_fn, which can hang in a child forked from a multi-threaded launcher."""
    expected = os.environ.get(PARENT_PID_ENV)
    if not expected or not expected.isdigit():
        return

    def watch() -> None:
        while os.getppid() == int(expected):
            time.sleep(poll_s)
        log.warning("launcher (pid %s) is gone: shutting down", expected)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def setup_logging(service: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("LONGTAIL_LOG_FORMAT", "json") == "json":
        handler.setFormatter(_JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {service} %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("LONGTAIL_LOG_LEVEL", "INFO"))
    logging.getLogger("kafka").setLevel(logging.WARNING)
    logging.getLogger("cassandra").setLevel(logging.WARNING)
    try:
        from longtail_common import telemetry
        from longtail_common.config import load_config

        telemetry.setup(service, load_config())
    except Exception as exc:  # noqa: BLE001 - telemetry must never keep a service from running
        log.warning("telemetry disabled: %s", exc)
    stop_when_parent_dies()

