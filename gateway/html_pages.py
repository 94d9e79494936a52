"""The server-rendered HTML of the browser pages: the frame every page shares, the video
cards of home and search, and the bodies of the watch (or private video) and upload pages.

The watch and upload pages each load one bundled script (built from web/ into
gateway/static/, no CDN), addressed by content hash so a new build gets new URLs.
"""
from __future__ import annotations

import hashlib
import html
import pathlib
import urllib.parse

from fastapi.responses import HTMLResponse

from longtail.search.v1 import search_service_pb2 as spb

STATIC_DIR = pathlib.Path(__file__).resolve().parent / "static"
MAX_QUERY = 200
PAGE_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "Cache-Control": "no-cache"}

esc = html.escape


def asset_versions() -> dict[str, str]:
    """Content hashes for cache-busting: a new build gets new URLs."""
    if not STATIC_DIR.is_dir():
        raise RuntimeError(f"{STATIC_DIR} is missing: build the web assets with `make web`")
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:12] for p in STATIC_DIR.iterdir() if p.is_file()}


def duration_text(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def card(r: spb.SearchResult, poster_url: str | None) -> str:
    poster = (f'<img src="{esc(poster_url)}" alt="" loading="lazy">'
              if poster_url else '<span class="noposter"></span>')
    return (f'<li class="card"><a href="/watch/{esc(r.video_id)}">{poster}'
            f'<span class="title">{esc(r.title)}</span>'
            f'<span class="meta">{esc(r.channel_name or r.channel_id)} · {duration_text(r.duration_seconds)}</span>'
            f"</a></li>")


class PageRenderer:
    """Wraps a page's body in the site frame, with the built assets' versioned URLs."""

    def __init__(self, versions: dict[str, str]):
        self._versions = versions

    def asset(self, name: str) -> str:
        return f"/static/{name}?v={self._versions.get(name, '0')}"

    def page(self, title: str, body: str, q: str = "", script: str = "", status: int = 200) -> HTMLResponse:
        tag = f'<script src="{self.asset(script)}" defer></script>' if script else ""
        return HTMLResponse(
            f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)} · Longtail</title>
<link rel="stylesheet" href="{self.asset("app.css")}">
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


def watch_body(video_id: str) -> str:
    # The script fills in title, channel, poster and stream from the watch payload (the
    # one call every player makes), and waits there while a video is still processing.
    return f"""<div id="watch" data-video-id="{esc(video_id)}" data-phase="loading">
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


def private_video_body(video_id: str) -> str:
    """What an anonymous visitor of a private video's page sees: an invitation to sign in
    (its owner, or an admin, may watch it once signed in)."""
    back = urllib.parse.urlencode({"next": f"/watch/{video_id}"})
    return f"""<div id="private-video" data-video-id="{esc(video_id)}">
  <h1>This video is private</h1>
  <p>Only its owner can watch it. <a id="sign-in-link" href="/account/sign-in?{esc(back)}">Sign in</a> to watch it
  if it is yours.</p>
</div>"""


UPLOAD_BODY = """<h1>Upload a video</h1>
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
