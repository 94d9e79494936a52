"""The browser pages: home (latest videos and search), watch, upload; plus the search API
and the built-in house ad.

Pages are plain server-rendered HTML; the watch and upload pages load one bundled script
each (built from web/ into gateway/static/, no CDN). Browse and search come from
search_svc over its gRPC contract, which only ever returns READY videos.
"""
from __future__ import annotations

import asyncio
import hashlib
import html
import logging
import os
import pathlib
import re
import subprocess
import urllib.parse

import grpc
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.staticfiles import StaticFiles

from longtail.search.v1 import search_service_pb2 as spb
from longtail.search.v1 import search_service_pb2_grpc as spb_grpc
from longtail_common.config import Config
from longtail_common.grpc_server import client_channel_options
from longtail_common.ports import MEDIA_BUCKET, ObjectStore

log = logging.getLogger("gateway.pages")

STATIC_DIR = pathlib.Path(__file__).resolve().parent / "static"
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
MAX_QUERY = 200
HOUSE_AD_SECONDS = 5
PAGE_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "Cache-Control": "no-cache"}

_GRPC_TO_HTTP = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}

esc = html.escape


def _asset_versions() -> dict[str, str]:
    """Content hashes for cache-busting: a new build gets new URLs."""
    if not STATIC_DIR.is_dir():
        raise RuntimeError(f"{STATIC_DIR} is missing: build the web assets with `make web`")
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:12] for p in STATIC_DIR.iterdir() if p.is_file()}


def _json_error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def make_house_ad(path: pathlib.Path, seconds: int = HOUSE_AD_SECONDS) -> None:
    """A short branded-looking clip (colour bars + tone) generated once with ffmpeg, so the
    house pre-roll really plays without a binary in the repository."""
    import imageio_ffmpeg

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.mp4")
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
         "-f", "lavfi", "-i", f"smptehdbars=size=640x360:rate=25:duration={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=660:sample_rate=48000:duration={seconds}",
         "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k",
         "-movflags", "+faststart", "-shortest", str(tmp)],
        check=True, timeout=120,
    )
    os.replace(tmp, path)  # atomic: a concurrent reader sees the whole file or none


def register_pages(app: FastAPI, cfg: Config, objects: ObjectStore) -> None:
    versions = _asset_versions()
    state: dict = {}
    ad_path = cfg.data_path / "ads" / "house-preroll.mp4"
    ad_lock = asyncio.Lock()

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    def asset(name: str) -> str:
        return f"/static/{name}?v={versions.get(name, '0')}"

    def search() -> spb_grpc.SearchServiceStub:
        if "search" not in state:
            channel = grpc.aio.insecure_channel(cfg.services.search, options=client_channel_options())
            state["search"] = spb_grpc.SearchServiceStub(channel)
        return state["search"]

    def media_url(request: Request, key: str) -> str:
        return objects.presigned_get_url(MEDIA_BUCKET, key) or str(request.url_for("origin_object", key=key))

    def result_json(request: Request, r: spb.SearchResult) -> dict:
        return {
            "id": r.video_id,
            "title": r.title,
            "description": r.description,
            "channel": {"id": r.channel_id, "name": r.channel_name},
            "duration_seconds": round(r.duration_seconds, 3),
            "publish_time": r.publish_time.ToJsonString() if r.HasField("publish_time") else None,
            "poster_url": media_url(request, r.poster_object_key) if r.poster_object_key else None,
            "watch_url": f"/watch/{r.video_id}",
        }

    async def run_search(q: str, page_size: int, page_token: str):
        """(response, None) or (None, (status, code, message))."""
        try:
            if q:
                resp = await search().SearchVideos(
                    spb.SearchVideosRequest(query=q, page_size=page_size, page_token=page_token), timeout=15)
            else:
                resp = await search().ListLatestVideos(
                    spb.ListLatestVideosRequest(page_size=page_size, page_token=page_token), timeout=15)
            return resp, None
        except grpc.aio.AioRpcError as exc:
            status = _GRPC_TO_HTTP.get(exc.code(), 500)
            if status == 500:
                log.error("search error: %s %s", exc.code(), exc.details())
            return None, (status, exc.code().name, exc.details() if status < 500 else "search is unavailable")

    # -- JSON ------------------------------------------------------------------------------
    async def search_json(request: Request, q: str, page_size: int, page_token: str):
        if not 1 <= page_size <= 100:
            return _json_error(400, "INVALID_ARGUMENT", "page_size must be between 1 and 100")
        resp, err = await run_search(q, page_size, page_token)
        if err:
            return _json_error(*err)
        return {"videos": [result_json(request, r) for r in resp.results], "next_page_token": resp.next_page_token}

    @app.get("/v1/search")
    async def search_videos(request: Request, q: str = "", page_size: int = 20, page_token: str = ""):
        """READY videos matching every word of `q` (prefixes too), best first."""
        q = q.strip()
        if not q:
            return _json_error(400, "INVALID_ARGUMENT", "q is required (use /v1/latest to browse)")
        if len(q) > MAX_QUERY:
            return _json_error(400, "INVALID_ARGUMENT", f"q is longer than {MAX_QUERY} characters")
        return await search_json(request, q, page_size, page_token)

    @app.get("/v1/latest")
    async def latest_videos(request: Request, page_size: int = 20, page_token: str = ""):
        """The most recently published READY videos."""
        return await search_json(request, "", page_size, page_token)

    # -- the house ad ----------------------------------------------------------------------
    @app.api_route("/ads/house-preroll.mp4", methods=["GET", "HEAD"])
    async def house_ad():
        if not ad_path.exists():
            async with ad_lock:
                if not ad_path.exists():
                    await asyncio.to_thread(make_house_ad, ad_path)
        return FileResponse(ad_path, media_type="video/mp4", headers={"Cache-Control": "public, max-age=86400"})

    # -- pages -----------------------------------------------------------------------------
    def page(title: str, body: str, q: str = "", script: str = "", status: int = 200) -> HTMLResponse:
        tag = f'<script src="{asset(script)}" defer></script>' if script else ""
        return HTMLResponse(
            f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)} · Longtail</title>
<link rel="stylesheet" href="{asset("app.css")}">
{tag}
</head>
<body>
<a class="skip-link" href="#main">Skip to content</a>
<header class="site-header">
  <a class="brand" href="/">Longtail</a>
  <nav aria-label="Main"><a href="/">Home</a><a href="/upload">Upload</a></nav>
  <form class="search-form" role="search" action="/" method="get">
    <input name="q" type="search" value="{esc(q)}" placeholder="Search videos" aria-label="Search videos"
      maxlength="{MAX_QUERY}">
    <button type="submit">Search</button>
  </form>
</header>
<main id="main" tabindex="-1">
{body}
</main>
</body>
</html>""",
            status_code=status,
            headers=PAGE_HEADERS,
        )

    def card(request: Request, r: spb.SearchResult) -> str:
        poster = (f'<img src="{esc(media_url(request, r.poster_object_key))}" alt="" loading="lazy">'
                  if r.poster_object_key else '<span class="noposter"></span>')
        return (f'<li class="card"><a href="/watch/{esc(r.video_id)}">{poster}'
                f'<span class="title">{esc(r.title)}</span>'
                f'<span class="meta">{esc(r.channel_name or r.channel_id)} · {_duration(r.duration_seconds)}</span>'
                f"</a></li>")

    @app.get("/", response_class=HTMLResponse)
    async def home(request: Request, q: str = "", page_token: str = ""):
        q = q.strip()[:MAX_QUERY]
        heading = f"Results for “{esc(q)}”" if q else "Latest videos"
        resp, err = await run_search(q, 24, page_token)
        if err:
            status, _code, message = err
            if status == 400:
                message = "Type a word to search for." if q else message
            body = f'<h1>{heading}</h1><p role="status" data-kind="error">{esc(message)}</p>'
            return page("Search" if q else "Home", body, q=q, status=status)
        if resp.results:
            items = "\n".join(card(request, r) for r in resp.results)
            listing = f'<ul class="grid" id="results" aria-label="{"Search results" if q else "Latest videos"}">{items}</ul>'
        elif q:
            listing = '<p id="no-results">No videos match. Try another word.</p>'
        else:
            listing = '<p id="no-results">No videos yet. <a href="/upload">Upload the first one</a>.</p>'
        more = ""
        if resp.next_page_token:
            params = urllib.parse.urlencode({k: v for k, v in (("q", q), ("page_token", resp.next_page_token)) if v})
            more = f'<p><a href="/?{esc(params)}">More videos</a></p>'
        return page(f"Search: {q}" if q else "Home", f"<h1>{heading}</h1>\n{listing}\n{more}", q=q)

    @app.get("/watch/{video_id}", response_class=HTMLResponse)
    async def watch_page(video_id: str):
        if not ID_RE.match(video_id):
            return page("Not found", "<h1>Video not found</h1>", status=404)
        # The script fills in title, channel, poster and stream from the watch payload (the
        # one call every player makes), and waits there while a video is still processing.
        body = f"""<div id="watch" data-video-id="{esc(video_id)}" data-phase="loading">
  <div class="player">
    <video id="content" playsinline preload="none" aria-label="Video"></video>
    <video id="ad" playsinline preload="none" hidden aria-label="Advertisement"></video>
    <span id="ad-badge" class="ad-badge" hidden>Ad · <span id="ad-remaining"></span></span>
    <button id="skip-ad" class="secondary" type="button" hidden>Skip ad</button>
    <button id="start" class="big-play" type="button" disabled>▶ Play</button>
  </div>
  <div class="player-bar">
    <label for="quality">Quality</label>
    <select id="quality" disabled><option value="-1">Auto</option></select>
    <span id="level-now" class="muted" aria-live="polite"></span>
  </div>
  <h1 id="title">Loading…</h1>
  <p class="muted">Channel: <span id="channel" hidden></span></p>
  <p id="description" class="description"></p>
  <p id="status" role="status" aria-live="polite"></p>
</div>"""
        return page("Watch", body, script="watch.js")

    @app.get("/upload", response_class=HTMLResponse)
    async def upload_page():
        body = """<h1>Upload a video</h1>
<form id="upload-form" class="upload-form">
  <label>Title <input name="title" required maxlength="200" autocomplete="off"></label>
  <label>Description <textarea name="description" rows="4" maxlength="5000"></textarea></label>
  <label>Channel <span class="hint">letters, digits, - or _</span>
    <input name="channel_id" required maxlength="64" pattern="[A-Za-z0-9][A-Za-z0-9_\\-]{0,63}" value="my-channel"></label>
  <label>Video file <input name="file" type="file" accept="video/*" required></label>
  <div class="actions">
    <button id="upload-submit" type="submit">Upload</button>
    <button id="upload-pause" class="secondary" type="button" hidden>Pause</button>
  </div>
</form>
<div id="progress-area" hidden>
  <progress id="upload-progress" max="100" value="0" aria-label="Upload progress"></progress>
  <span id="progress-text"></span>
</div>
<p id="status" role="status" aria-live="polite"></p>
<p id="watch-link-area" hidden><a id="watch-link" href="/">Watch</a></p>"""
        return page("Upload", body, script="upload.js")
