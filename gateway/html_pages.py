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
from gateway.video_access import privacy_name

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


def _card(video_id: str, title: str, channel: str, duration_s: float, poster_url: str | None) -> str:
    poster = (f'<img src="{esc(poster_url)}" alt="" loading="lazy">'
              if poster_url else '<span class="noposter"></span>')
    # The hover preview (web/src/home.js) is fetched only when the card is hovered or focused.
    preview = f"/v1/videos/{video_id}/preview.webp"
    return (f'<li class="card" data-preview="{esc(preview)}"><a href="/watch/{esc(video_id)}">{poster}'
            f'<span class="title">{esc(title)}</span>'
            f'<span class="meta">{esc(channel)} · {duration_text(duration_s)}</span>'
            f"</a></li>")


def card(r: spb.SearchResult, poster_url: str | None) -> str:
    """A search or latest-videos result."""
    return _card(r.video_id, r.title, r.channel_name or r.channel_id, r.duration_seconds, poster_url)


def channel_body(channel: video_pb2.Channel, videos: list[tuple[video_pb2.Video, str | None]],
                 more_url: str = "") -> str:
    """A channel's page: its public READY videos (each with its poster URL), newest first."""
    name = channel.name or channel.id
    items = "\n".join(_card(v.id, v.title, name, v.duration_seconds, poster) for v, poster in videos)
    listing = (f'<ul class="grid" id="channel-videos" aria-label="Videos">{items}</ul>' if videos
               else '<p id="no-videos">No public videos yet.</p>')
    more = f'<p><a href="{esc(more_url)}">More videos</a></p>' if more_url else ""
    return f'<h1 id="channel-name">{esc(name)}</h1>\n<p class="muted">Channel {esc(channel.id)}</p>\n{listing}\n{more}'


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
                 oidc_name: str = "", sign_up: bool = False) -> str:
    notice = f'<p id="sign-in-error" role="alert" data-kind="error">{esc(message)}</p>' if message else ""
    oidc = (f'<p><a id="oidc-sign-in" class="button" href="/auth/oidc/start?next={esc(next_url)}">'
            f"Sign in with {esc(oidc_name)}</a></p>") if oidc_name else ""
    if sign_up:  # only when open sign-up is on: otherwise there is no such page to link to
        oidc += (f'<p>No account yet? <a id="sign-up-link" href="/account/sign-up?'
                 f'{esc(urllib.parse.urlencode({"next": next_url}))}">Sign up</a></p>')
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


def sign_up_body(viewer: Viewer, next_url: str, message: str = "", username: str = "", email: str = "") -> str:
    notice = f'<p id="sign-up-error" role="alert" data-kind="error">{esc(message)}</p>' if message else ""
    return f"""<h1>Create an account</h1>
{notice}
<form id="sign-up-form" class="upload-form" action="/account/sign-up" method="post">
  {csrf_input(viewer)}
  <input type="hidden" name="next" value="{esc(next_url)}">
  <label>Username <span class="hint">2-32 lower-case letters, digits, - or _, starting with a letter</span>
    <input name="username" required minlength="2" maxlength="32" autocomplete="username" value="{esc(username)}"></label>
  <label>Email <input name="email" type="email" required maxlength="254" autocomplete="email" value="{esc(email)}"></label>
  <label>Password <span class="hint">at least 8 characters and hard to guess: a few uncommon words do well</span>
    <input name="password" type="password" required minlength="8" maxlength="256" autocomplete="new-password"></label>
  <div class="actions"><button id="sign-up-submit" type="submit">Create account</button></div>
</form>
<p>Have an account? <a href="/account/sign-in?{esc(urllib.parse.urlencode({"next": next_url}))}">Sign in</a></p>"""


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


def _status_text(video: video_pb2.Video) -> str:
    return video_pb2.VideoStatus.Name(video.status).removeprefix("VIDEO_STATUS_")


def my_videos_body(videos: list[video_pb2.Video], views: dict[str, int] | None, notice: str = "") -> str:
    """The signed-in account's videos: status, privacy, views (None: the counts are not
    available now) and the links to edit or delete each."""
    shown = f'<p id="my-videos-notice" role="status">{esc(notice)}</p>' if notice else ""
    if not videos:
        return f'<h1>My videos</h1>\n{shown}\n<p id="no-videos">No videos yet. <a href="/upload">Upload one</a>.</p>'

    def row(v: video_pb2.Video) -> str:
        vid, count = esc(v.id), (views or {}).get(v.id)
        return (f'<tr data-video-id="{vid}"><td class="title"><a href="/watch/{vid}">{esc(v.title)}</a></td>'
                f'<td><a href="/channel/{esc(v.channel.id)}">{esc(v.channel.name or v.channel.id)}</a></td>'
                f'<td class="status">{esc(_status_text(v))}</td><td class="privacy">{esc(privacy_name(v))}</td>'
                f'<td class="views">{count if count is not None else "–"}</td><td>{_time(v.create_time)}</td>'
                f'<td class="actions"><a class="edit" href="/my/videos/{vid}/edit">Edit</a> '
                f'<a class="delete" href="/my/videos/{vid}/delete">Delete</a></td></tr>')

    rows = "\n".join(row(v) for v in videos)
    return (f"<h1>My videos</h1>\n{shown}\n<table id=\"my-videos\"><thead><tr><th>Title</th><th>Channel</th>"
            f"<th>Status</th><th>Privacy</th><th>Views</th><th>Uploaded</th><th></th></tr></thead>"
            f"<tbody>{rows}</tbody></table>")


def edit_video_body(viewer: Viewer, video: video_pb2.Video, message: str = "", title: str | None = None,
                    description: str | None = None, privacy: str | None = None) -> str:
    """The edit form of one video, at its current etag (a save over a newer edit is refused);
    `title`/`description`/`privacy` keep what was typed when a save is refused."""
    notice = f'<p id="edit-error" role="alert" data-kind="error">{esc(message)}</p>' if message else ""
    chosen = privacy or privacy_name(video)
    options = "".join(f'<option value="{p}"{" selected" if p == chosen else ""}>{label}</option>' for p, label in (
        ("public", "Public: listed and searchable"), ("unlisted", "Unlisted: plays for anyone with the link"),
        ("private", "Private: only you")))
    vid = esc(video.id)
    return f"""<h1>Edit “{esc(video.title)}”</h1>
{notice}
<form id="edit-video-form" class="upload-form" action="/my/videos/{vid}/edit" method="post">
  {csrf_input(viewer)}
  <input type="hidden" name="etag" value="{esc(video.etag)}">
  <label>Title <input name="title" required maxlength="200" autocomplete="off"
    value="{esc(video.title if title is None else title)}"></label>
  <label>Description <textarea name="description" rows="4" maxlength="5000">{
      esc(video.description if description is None else description)}</textarea></label>
  <label>Privacy <select name="privacy">{options}</select></label>
  <div class="actions"><button id="edit-save" type="submit">Save</button>
    <a class="button secondary" href="/my/videos">Cancel</a></div>
</form>
<p><a id="delete-link" href="/my/videos/{vid}/delete">Delete this video…</a></p>"""


def delete_video_body(viewer: Viewer, video: video_pb2.Video, message: str = "") -> str:
    """The confirmation a delete asks for: nothing is removed until it is posted."""
    notice = f'<p id="delete-error" role="alert" data-kind="error">{esc(message)}</p>' if message else ""
    vid = esc(video.id)
    return f"""<h1>Delete “{esc(video.title)}”?</h1>
{notice}
<p>The video, its files and its view counts are removed for good. This cannot be undone.</p>
<form id="delete-video-form" action="/my/videos/{vid}/delete" method="post">
  {csrf_input(viewer)}
  <input type="hidden" name="etag" value="{esc(video.etag)}">
  <div class="actions"><button id="delete-confirm" class="danger" type="submit">Delete for good</button>
    <a id="delete-cancel" class="button secondary" href="/my/videos">Keep it</a></div>
</form>"""
