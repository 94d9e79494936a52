"""Locust load for bench/signing_bench.py: viewers who each call the watch API, then fetch
what a player fetches first from the stream it was handed (the master playlist, one
variant playlist, its init segment if any, and its first media segment), over and over
with no think time. The video comes from SIGNING_BENCH_VIDEO.
"""
from __future__ import annotations

import os
import re
import urllib.parse

from locust import FastHttpUser, constant, task

VIDEO = os.environ.get("SIGNING_BENCH_VIDEO", "")
_INIT = re.compile(r'#EXT-X-MAP:URI="([^"]+)"')


def first_uri(playlist: str) -> str:
    return next(line for line in playlist.splitlines() if line and not line.startswith("#"))


class Viewer(FastHttpUser):
    wait_time = constant(0)

    @task
    def watch_then_fetch(self) -> None:
        payload = self.client.get(f"/v1/videos/{VIDEO}/watch?region=JP&client=web", name="watch").json()
        master = payload["stream"]["url"]
        variant = urllib.parse.urljoin(master, first_uri(self.client.get(master, name="master.m3u8").text))
        playlist = self.client.get(variant, name="variant.m3u8").text
        init = _INIT.search(playlist)
        if init:
            self.client.get(urllib.parse.urljoin(variant, init.group(1)), name="init")
        self.client.get(urllib.parse.urljoin(variant, first_uri(playlist)), name="segment")
