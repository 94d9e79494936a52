"""Schemathesis against a running platform (every service a process): property-based
requests from the gateway's own OpenAPI document, positive and negative, with its
stateful phase following the links it infers (create a video, then read, upload, watch).

Passes when no response is a 5xx and every response matches what the document says of
its status code, content type, headers and body. Bounded for CI: a fixed seed, at most
FUZZ_EXAMPLES cases per operation and FUZZ_SECONDS in all. Nothing is excluded (byte
routes answer 404 quickly for the keys the fuzzer makes up).
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from longtail_cli.launcher import Platform, free_port
from longtail_common.config import Config
from tests.auth_helpers import api_token

pytestmark = pytest.mark.slow

FUZZ_SECONDS = 75  # per run: one anonymous, one signed in
FUZZ_EXAMPLES = 30
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_headers_conformance,response_schema_conformance")
HOOKS = pathlib.Path(__file__).parent / "api_fuzz" / "hooks.py"


@pytest.mark.parametrize("signed_in", [False, True], ids=["anonymous", "with-token"])
def test_api_answers_as_its_openapi_document_says(tmp_path, signed_in):
    cfg = Config(data_dir=str(tmp_path / "lt"))
    cfg.limits.uploads_per_day = 0  # the fuzzer creates hundreds of videos as one account
    with Platform(cfg, gateway_port=free_port(), transcoder_workers=1) as platform:
        # Anonymous: every route's 401/403/404 answers. Signed in: creating videos and
        # uploading are reached too, not only their 401.
        headers = ["--header", f"Authorization: Bearer {api_token(platform.cfg, 'fuzzer')}"] if signed_in else []
        # One worker: hypothesis describes its strategies with source inspection that is
        # not thread-safe (a run with two workers fails on its own AST cache).
        run = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", f"{platform.gateway_url}/openapi.json",
             "--checks", CHECKS, "--max-examples", str(FUZZ_EXAMPLES), "--max-time", str(FUZZ_SECONDS),
             *headers, "--workers", "1", "--seed", "23", "--request-timeout", "30", "--output-truncate", "true"],
            env=dict(os.environ, SCHEMATHESIS_HOOKS=str(HOOKS)), capture_output=True, text=True,
            timeout=FUZZ_SECONDS + 120)
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
