"""The server-rendered HTML of the browser pages: the frame every page shares (with the
visitor's sign-in state), the video cards of home and search, and the bodies of the
watch (or private video), upload, sign-in, password, API token and "My videos" pages.

The watch and upload pages each load one bundled script (built from web/ into
gateway/static/, no CDN), addressed by content hash so a new build gets new URLs.
"""
from __future__ import annotations

import hashlib
import html
import pathlib
import urllib.parse
from dataclasses import dataclass

from fastapi.responses import HTMLResponse

from longtail.accounts.v1 import account_pb2
from longtail.metadata.v1 import video_pb2
from longtail.search.v1 import search_service_pb2 as spb
from gateway.auth.cookies import CSRF_FIELD, CookiePolicy

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
    # The hover preview (web/src/home.js) is fetched only when the card is hovered or focused.
    preview = f"/v1/videos/{r.video_id}/preview.webp"
    return (f'<li class="card" data-preview="{esc(preview)}"><a href="/watch/{esc(r.video_id)}">{poster}'
            f'<span class="title">{esc(r.title)}</span>'
            f'<span class="meta">{esc(r.channel_name or r.channel_id)} · {duration_text(r.duration_seconds)}</span>'
            f"</a></li>")


@dataclass(frozen=True)
class Viewer:
    """Who looks at a page: the signed-in username ("" for a visitor) and the CSRF token its
    forms carry; `new_csrf_nonce` is set as a cookie with the page when the browser had none."""

    username: str = ""
    csrf_token: str = ""
    new_csrf_nonce: str | None = None


def csrf_input(viewer: Viewer) -> str:
    return f'<input type="hidden" name="{CSRF_FIELD}" value="{esc(viewer.csrf_token)}">'


def account_nav(viewer: Viewer) -> str:
    if not viewer.username:
        return '<a href="/account/sign-in">Sign in</a>'
    return (f'<a href="/my/videos">My videos</a><a href="/account/tokens">API tokens</a>'
            f'<form class="sign-out" action="/account/sign-out" method="post">{csrf_input(viewer)}'
            f'<button class="link" type="submit">Sign out <span id="signed-in-as">{esc(viewer.username)}</span>'
            f'</button></form>')


class PageRenderer:
    """Wraps a page's body in the site frame, with the built assets' versioned URLs."""

    def __init__(self, versions: dict[str, str], cookies: CookiePolicy):
        self._versions = versions
        self._cookies = cookies

    def asset(self, name: str) -> str:
        return f"/static/{name}?v={self._versions.get(name, '0')}"

    def page(self, title: str, body: str, q: str = "", script: str = "", status: int = 200,
             viewer: Viewer = Viewer()) -> HTMLResponse:
        tag = f'<script src="{self.asset(script)}" defer></script>' if script else ""
        if viewer.csrf_token:
            tag += f'\n<meta name="csrf-token" content="{esc(viewer.csrf_token)}">'
        response = HTMLResponse(
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
  <nav aria-label="Main"><a href="/">Home</a><a href="/upload">Upload</a>{account_nav(viewer)}</nav>
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
        if viewer.new_csrf_nonce:
            self._cookies.set(response, self._cookies.csrf, viewer.new_csrf_nonce, max_age=None)
        return response


def watch_body(video_id: str) -> str:
    # The script fills in title, channel, poster, stream, chapters, views and the channel's
    # other videos from the watch payload (the one call every player makes) and the list
    # API, and waits there while a video is still processing. The frame (picture and
    # controls) is what goes full screen.
    return f"""<div id="watch" class="watch-layout" data-video-id="{esc(video_id)}" data-phase="loading">
<div class="watch-main">
  <div id="player-frame" class="player-frame">
  <div class="player">
    <video id="content" playsinline preload="none" aria-label="Video" tabindex="-1"></video>
    <video id="ad" playsinline preload="none" hidden aria-label="Advertisement"></video>
    <span id="ad-badge" class="ad-badge" hidden>Ad · <span id="ad-remaining"></span></span>
    <button id="skip-ad" class="secondary" type="button" hidden>Skip ad</button>
    <button id="start" class="big-play" type="button" disabled>▶ Play</button>
    <p id="resume-notice" class="resume-notice" role="status" hidden>Resumed at <span id="resume-at"></span>.
      <button id="start-over" class="link" type="button">Start over</button></p>
  </div>
  <div id="controls" class="controls" role="group" aria-label="Player controls">
    <div id="seek-area" class="seek-area">
      <input id="seek" class="seek" type="range" min="0" max="0" step="0.1" value="0" aria-label="Seek">
      <div id="chapter-marks" class="chapter-marks"></div>
      <div id="preview" class="preview" hidden aria-hidden="true">
        <div id="preview-image" class="preview-image"></div>
        <span id="preview-chapter" class="preview-chapter"></span><span id="preview-time"></span>
      </div>
    </div>
    <div class="control-row">
      <button id="play-pause" class="icon" type="button" aria-label="Play (k)"></button>
      <button id="mute" class="icon" type="button" aria-label="Mute (m)"></button>
      <input id="volume" class="volume" type="range" min="0" max="1" step="0.05" value="1" aria-label="Volume">
      <span id="time" class="time">0:00 / 0:00</span>
      <span id="chapter-now" class="chapter-now muted"></span>
      <span class="spacer"></span>
      <label class="menu">Speed <select id="speed"><option value="1">Normal</option></select></label>
      <label id="captions-box" class="menu" hidden>Captions <select id="captions"></select></label>
      <label id="audio-box" class="menu" hidden>Audio <select id="audio"></select></label>
      <label class="menu" for="quality">Quality</label>
      <select id="quality" disabled><option value="-1">Auto</option></select>
      <button id="fullscreen" class="icon" type="button" aria-label="Full screen (f)"></button>
    </div>
  </div>
  </div>
  <p id="level-now" class="muted level-now" aria-live="polite"></p>
  <h1 id="title">Loading…</h1>
  <p class="muted video-meta">Channel: <span id="channel" hidden></span> <span id="views" hidden></span></p>
  <p id="description" class="description"></p>
  <section id="chapters-section" class="chapters" hidden aria-labelledby="chapters-heading">
    <h2 id="chapters-heading">Chapters</h2>
    <ol id="chapters"></ol>
  </section>
  <p id="status" role="status" aria-live="polite"></p>
  <details class="shortcuts"><summary>Keyboard shortcuts</summary>
    <p>Space or k play/pause · j / l back/forward 10 s · ← / → 5 s · ↑ / ↓ volume · 0–9 jump to 0–90 % ·
    f full screen · m mute · c captions · &lt; / &gt; speed</p></details>
</div>
<aside id="more-section" class="more" hidden aria-labelledby="more-heading">
  <h2 id="more-heading">More from this channel</h2>
  <ul id="more" class="more-list"></ul>
</aside>
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


_UPLOAD_BODY = """<h1>Upload a video</h1>
<form id="upload-form" class="upload-form">
  <label>Title <input name="title" required maxlength="200" autocomplete="off"></label>
  <label>Description <textarea name="description" rows="4" maxlength="5000"></textarea></label>
  <label>Channel <span class="hint">letters, digits, - or _</span>
    <input name="channel_id" required maxlength="64" pattern="[A-Za-z0-9][A-Za-z0-9_\\-]{0,63}" value="{channel}"></label>
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


def upload_body(channel: str) -> str:
    """The upload form; the channel field starts at the uploader's first channel."""
    return _UPLOAD_BODY.replace("{channel}", esc(channel))


def sign_in_body(viewer: Viewer, next_url: str, message: str = "", username: str = "",
                 oidc_name: str = "") -> str:
    notice = f'<p id="sign-in-error" role="alert" data-kind="error">{esc(message)}</p>' if message else ""
    oidc = (f'<p><a id="oidc-sign-in" class="button" href="/auth/oidc/start?next={esc(next_url)}">'
            f"Sign in with {esc(oidc_name)}</a></p>") if oidc_name else ""
    return f"""<h1>Sign in</h1>
{notice}
<form id="sign-in-form" class="upload-form" action="/account/sign-in" method="post">
  {csrf_input(viewer)}
  <input type="hidden" name="next" value="{esc(next_url)}">
  <label>Username <input name="username" required maxlength="32" autocomplete="username" value="{esc(username)}"></label>
  <label>Password <input name="password" type="password" required maxlength="256" autocomplete="current-password"></label>
  <div class="actions"><button id="sign-in-submit" type="submit">Sign in</button></div>
</form>
{oidc}"""


def set_password_body(viewer: Viewer, link_token: str, message: str = "") -> str:
    notice = f'<p id="password-error" role="alert" data-kind="error">{esc(message)}</p>' if message else ""
    return f"""<h1>Choose a password</h1>
{notice}
<form id="set-password-form" class="upload-form" action="/account/set-password" method="post">
  {csrf_input(viewer)}
  <input type="hidden" name="token" value="{esc(link_token)}">
  <label>New password <input name="password" type="password" required minlength="8" maxlength="256"
    autocomplete="new-password"></label>
  <div class="actions"><button type="submit">Set password</button></div>
</form>"""


def message_body(heading: str, text: str, link: tuple[str, str] | None = None) -> str:
    more = f'<p><a href="{esc(link[0])}">{esc(link[1])}</a></p>' if link else ""
    return f'<h1>{esc(heading)}</h1>\n<p role="status">{esc(text)}</p>\n{more}'


def _time(ts) -> str:
    return ts.ToDatetime().strftime("%Y-%m-%d %H:%M UTC") if ts.seconds else "never"


def tokens_body(viewer: Viewer, tokens: list[account_pb2.ApiToken], new_secret: str = "") -> str:
    shown = (f'<p role="status">Your new token, shown this once: <code id="new-token">{esc(new_secret)}</code></p>'
             if new_secret else "")
    rows = "\n".join(
        f'<tr><td>{esc(t.display_name) or "(no label)"}</td><td><code>{esc(t.id)}</code></td>'
        f"<td>{_time(t.create_time)}</td><td>{_time(t.expire_time)}</td>"
        f'<td><form action="/account/tokens/{esc(t.id)}/revoke" method="post">{csrf_input(viewer)}'
        f'<button class="secondary" type="submit">Revoke</button></form></td></tr>' for t in tokens)
    table = (f'<table id="tokens"><thead><tr><th>Label</th><th>Id</th><th>Created</th><th>Expires</th><th></th>'
             f"</tr></thead><tbody>{rows}</tbody></table>") if tokens else "<p>No tokens yet.</p>"
    return f"""<h1>Personal API tokens</h1>
<p>Send one as <code>Authorization: Bearer &lt;token&gt;</code> to the REST API.</p>
{shown}
{table}
<form id="new-token-form" class="upload-form" action="/account/tokens" method="post">
  {csrf_input(viewer)}
  <label>Label <input name="display_name" maxlength="64" autocomplete="off"></label>
  <label>Expires in days <span class="hint">empty: never (or the site's limit)</span>
    <input name="expires_days" type="number" min="1" max="3650"></label>
  <div class="actions"><button type="submit">Create token</button></div>
</form>"""


def my_videos_body(videos: list[video_pb2.Video]) -> str:
    if not videos:
        return '<h1>My videos</h1>\n<p id="no-videos">No videos yet. <a href="/upload">Upload one</a>.</p>'
    rows = "\n".join(
        f'<tr data-video-id="{esc(v.id)}"><td><a href="/watch/{esc(v.id)}">{esc(v.title)}</a></td>'
        f"<td>{esc(v.channel.name or v.channel.id)}</td>"
        f'<td class="status">{esc(video_pb2.VideoStatus.Name(v.status).removeprefix("VIDEO_STATUS_"))}</td>'
        f"<td>{_time(v.create_time)}</td></tr>" for v in videos)
    return (f'<h1>My videos</h1>\n<table id="my-videos"><thead><tr><th>Title</th><th>Channel</th><th>Status</th>'
            f"<th>Uploaded</th></tr></thead><tbody>{rows}</tbody></table>")
