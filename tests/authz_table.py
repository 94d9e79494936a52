"""The expected answer of every gateway route to each kind of caller (issue 22's
authorization matrix), read by tests/test_authz_matrix.py.

A row is keyed by the route's name and method, as FastAPI's route table has them; the test
fails for a route of the app that has no row here, so a new route needs one. Callers:
anonymous (no credentials), other (a signed-in account that owns nothing here), owner (the
account whose channel holds the video) and admin. A row's path and request are built from
`Subject`: the owner's READY video and what the test made around it. A route that acts on
a video is also asked about the owner's READY *private* video (`Row.private`): another
account gets 404 for it, as for no video at all (403 for a public one), anonymous 401 for
an edit and 404 for a read."""
from __future__ import annotations

import dataclasses
import uuid
from typing import Callable

CALLERS = ("anonymous", "other", "owner", "admin")

# Routes that are not the product's API: served files and the API's own documentation.
SKIPPED_ROUTE_NAMES = frozenset({"static", "openapi", "swagger_ui_html", "swagger_ui_redirect", "redoc_html"})


@dataclasses.dataclass
class Subject:
    """What a row's request acts on, made once by the test (one per caller where a call uses
    something up: a fresh upload, a fresh token)."""
    video_id: str
    channel_id: str
    new_video_id: Callable[[], str]  # a fresh video of the owner's (created, no bytes), to delete
    master_path: str  # the signed origin path of the video's manifest, from the owner's watch call
    master_key: str  # its object key
    new_upload_path: Callable[[], str]  # a fresh upload of the owner's, 4 bytes long
    new_owner_token_id: Callable[[], str]  # a fresh API token of the owner's
    webhook_id: str = ""  # the owner's webhook endpoint (registered before the uploads)
    delivery_id: str = ""  # one of its deliveries
    new_owner_webhook_id: Callable[[], str] = lambda: ""  # a fresh webhook of the owner's, to delete
    new_caption: Callable[[], str] = lambda: "de"  # a fresh caption of the video's (its language), to delete
    privacy: str = "public"  # the video's


@dataclasses.dataclass
class Row:
    expect: dict[str, int]  # caller -> status
    path: Callable[[Subject], str]
    request: Callable[[Subject], dict] = lambda s: {}  # httpx keyword arguments (json, headers, ...)
    private: dict[str, int] | None = None  # caller -> status on the owner's private video


def each(status: int) -> dict[str, int]:
    return dict.fromkeys(CALLERS, status)


def signed_in(anonymous: int, other: int, owner: int, admin: int) -> dict[str, int]:
    return {"anonymous": anonymous, "other": other, "owner": owner, "admin": admin}


TUS = {"Tus-Resumable": "1.0.0"}
CAPTION = b"WEBVTT\n\n00:00.500 --> 00:01.500\nMatrix caption\n"
PATCH_UPLOAD = {**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


ROWS: dict[tuple[str, str], Row] = {
    # The REST API on videos.
    ("create_video", "POST"): Row(signed_in(401, 403, 201, 201), lambda s: "/v1/videos",
                                  lambda s: {"json": {"title": "t", "channel_id": s.channel_id, "size_bytes": 4}}),
    ("get_video", "GET"): Row(each(200), lambda s: f"/v1/videos/{s.video_id}", private=signed_in(404, 404, 200, 200)),
    ("edit_video", "PATCH"): Row(signed_in(401, 403, 200, 200), lambda s: f"/v1/videos/{s.video_id}",
                                 lambda s: {"json": {"description": "edited by the matrix"}},
                                 private=signed_in(401, 404, 200, 200)),
    # Owner and admin delete a fresh video of the owner's, so the READY one stays for the rest.
    ("delete_video", "DELETE"): Row(signed_in(401, 403, 204, 204), lambda s: f"/v1/videos/{s.new_video_id()}",
                                    private=signed_in(401, 404, 204, 204)),
    ("list_videos", "GET"): Row(each(200), lambda s: f"/v1/videos?channel_id={s.channel_id}"),
    # Channels: anyone signed in makes one of their own (a fresh id each time); the owner's
    # channel id is taken (409), whoever asks.
    ("create_channel", "POST"): Row(signed_in(401, 201, 201, 201), lambda s: "/v1/channels",
                                    lambda s: {"json": {"id": f"made-{uuid.uuid4().hex[:12]}"}}),
    ("get_channel", "GET"): Row(each(200), lambda s: f"/v1/channels/{s.channel_id}"),
    ("channel_page", "GET"): Row(each(200), lambda s: f"/channel/{s.channel_id}"),
    ("watch", "GET"): Row(each(200), lambda s: f"/v1/videos/{s.video_id}/watch",
                          private=signed_in(404, 404, 200, 200)),
    # Downloads: the owner (or an admin) asks for one; a height the video lacks is a 400 after
    # the access check (a real request would race the transcoder between owner and admin).
    ("create_download", "POST"): Row(signed_in(401, 403, 400, 400), lambda s: f"/v1/videos/{s.video_id}/downloads",
                                     lambda s: {"json": {"kind": "mp4", "height": 4320}},
                                     private=signed_in(401, 404, 400, 400)),
    ("list_downloads", "GET"): Row(each(200), lambda s: f"/v1/videos/{s.video_id}/downloads",
                                   private=signed_in(404, 404, 200, 200)),
    # A download file is served under its own signed URL only.
    ("signed_download", "GET"): Row(each(403), lambda s: f"/dl/t/not-a-token/videos/{s.video_id}/downloads/audio.m4a"),
    ("signed_download", "HEAD"): Row(each(403), lambda s: f"/dl/t/not-a-token/videos/{s.video_id}/downloads/audio.m4a"),
    # Alternate audio tracks: the owner (or an admin) uploads and deletes; a bad language tag
    # (an upload) and a track the video lacks (a delete) answer after the access check.
    ("create_audio_track", "POST"): Row(signed_in(401, 403, 400, 400),
                                        lambda s: f"/v1/videos/{s.video_id}/audio-tracks?language=english&kind=dub",
                                        lambda s: {"content": b"RIFF", "headers": {"Content-Type": "audio/wav"}},
                                        private=signed_in(401, 404, 400, 400)),
    ("list_audio_tracks", "GET"): Row(each(200), lambda s: f"/v1/videos/{s.video_id}/audio-tracks",
                                      private=signed_in(404, 404, 200, 200)),
    ("delete_audio_track", "DELETE"): Row(signed_in(401, 403, 404, 404),
                                          lambda s: f"/v1/videos/{s.video_id}/audio-tracks/de/dub",
                                          private=signed_in(401, 404, 404, 404)),
    # Thumbnails: any moment for whoever may watch; the poster is the owner's (or an admin's).
    ("thumbnail_at", "GET"): Row(each(200), lambda s: f"/v1/videos/{s.video_id}/thumbnail.jpg?time=1&width=160",
                                 private=signed_in(404, 404, 200, 200)),
    ("set_poster", "PUT"): Row(signed_in(401, 403, 200, 200), lambda s: f"/v1/videos/{s.video_id}/poster?time=0.5",
                               private=signed_in(401, 404, 200, 200)),
    ("set_poster", "POST"): Row(signed_in(401, 403, 200, 200), lambda s: f"/v1/videos/{s.video_id}/poster?time=1",
                                private=signed_in(401, 404, 200, 200)),
    ("preview", "GET"): Row(each(302), lambda s: f"/v1/videos/{s.video_id}/preview.webp",
                            private=signed_in(404, 404, 302, 302)),
    ("video_stats", "GET"): Row(each(200), lambda s: f"/v1/videos/{s.video_id}/stats",
                                private=signed_in(404, 404, 200, 200)),
    # Beacons need the playback id of a watch call: without one they are refused, whoever sends them.
    ("post_view", "POST"): Row(each(403), lambda s: f"/v1/videos/{s.video_id}/views",
                               lambda s: {"json": {"kind": "start"}}),
    ("post_views", "POST"): Row(each(422), lambda s: "/v1/views", lambda s: {"json": {"events": []}}),
    ("search_videos", "GET"): Row(each(200), lambda s: "/v1/search?q=matrix"),
    ("latest_videos", "GET"): Row(each(200), lambda s: "/v1/latest"),
    # Captions: anyone who may watch the video lists them; its owner or an admin adds and removes them.
    ("create_caption", "POST"): Row(signed_in(401, 403, 201, 201), lambda s: f"/v1/videos/{s.video_id}/captions?language=en",
                                    lambda s: {"content": CAPTION, "headers": {"Content-Type": "text/vtt"}},
                                    private=signed_in(401, 404, 201, 201)),
    ("list_captions", "GET"): Row(each(200), lambda s: f"/v1/videos/{s.video_id}/captions",
                                  private=signed_in(404, 404, 200, 200)),
    ("delete_caption", "DELETE"): Row(signed_in(401, 403, 204, 204),
                                      lambda s: f"/v1/videos/{s.video_id}/captions/{s.new_caption()}",
                                      private=signed_in(401, 404, 204, 204)),
    # Uploads (tus): only the owner of the channel creates, only the creator sends bytes.
    ("tus_options", "OPTIONS"): Row(each(204), lambda s: "/v1/uploads", lambda s: {"headers": TUS}),
    ("tus_options_upload", "OPTIONS"): Row(each(204), lambda s: s.new_upload_path(), lambda s: {"headers": TUS}),
    ("tus_create", "POST"): Row(signed_in(401, 403, 201, 201), lambda s: "/v1/uploads", lambda s: {"headers": {
        **TUS, "Upload-Length": "4", "Upload-Metadata": f"title {_b64('t')},channel_id {_b64(s.channel_id)}"}}),
    ("tus_upload_head", "HEAD"): Row(signed_in(401, 403, 200, 200), lambda s: s.new_upload_path(),
                                     lambda s: {"headers": TUS}),
    ("tus_upload", "PATCH"): Row(signed_in(401, 403, 204, 204), lambda s: s.new_upload_path(),
                                 lambda s: {"headers": PATCH_UPLOAD, "content": b"mine"}),
    # Media: a signed URL plays for whoever holds it; unsigned paths are refused.
    # A private video's signed URLs play only for the account they were issued to (the owner).
    ("signed_origin_object", "GET"): Row(each(200), lambda s: s.master_path, private=signed_in(403, 403, 200, 403)),
    ("signed_origin_object", "HEAD"): Row(each(200), lambda s: s.master_path, private=signed_in(403, 403, 200, 403)),
    ("origin_object", "GET"): Row(each(403), lambda s: f"/origin/{s.master_key}"),
    ("origin_object", "HEAD"): Row(each(403), lambda s: f"/origin/{s.master_key}"),
    ("signed_edge_object", "GET"): Row(each(403), lambda s: f"/edge/US/t/not-a-token/{s.master_key}"),
    ("signed_edge_object", "HEAD"): Row(each(403), lambda s: f"/edge/US/t/not-a-token/{s.master_key}"),
    ("edge_object", "GET"): Row(each(403), lambda s: f"/edge/US/{s.master_key}"),
    ("edge_object", "HEAD"): Row(each(403), lambda s: f"/edge/US/{s.master_key}"),
    ("house_ad", "GET"): Row(each(200), lambda s: "/ads/house-preroll.mp4"),
    ("house_ad", "HEAD"): Row(each(200), lambda s: "/ads/house-preroll.mp4"),
    ("healthz", "GET"): Row(each(200), lambda s: "/healthz"),
    # Accounts: sign-in forms (a post without the form's CSRF token is refused for everyone).
    ("sign_in_page", "GET"): Row(each(200), lambda s: "/account/sign-in"),
    ("sign_in", "POST"): Row(each(403), lambda s: "/account/sign-in",
                             lambda s: {"data": {"username": "x", "password": "y"}}),
    ("sign_out", "POST"): Row(each(403), lambda s: "/account/sign-out"),
    ("oidc_start", "GET"): Row(each(404), lambda s: "/auth/oidc/start"),  # no OIDC issuer configured here
    ("oidc_callback", "GET"): Row(each(404), lambda s: "/auth/oidc/callback?code=x&state=y"),
    # The set-password form opens for anyone; its post checks the link.
    ("set_password_page", "GET"): Row(each(200), lambda s: "/account/set-password?token=bogus"),
    ("set_password", "POST"): Row(each(403), lambda s: "/account/set-password",
                                  lambda s: {"data": {"token": "bogus", "password": "a long enough password"}}),
    # Accounts: the API (bearer tokens), one's own tokens only.
    ("me", "GET"): Row(signed_in(401, 200, 200, 200), lambda s: "/v1/me"),
    ("list_tokens_api", "GET"): Row(signed_in(401, 200, 200, 200), lambda s: "/v1/tokens"),
    ("create_token_api", "POST"): Row(signed_in(401, 201, 201, 201), lambda s: "/v1/tokens",
                                      lambda s: {"json": {"display_name": "matrix"}}),
    ("revoke_token_api", "DELETE"): Row(signed_in(401, 404, 204, 404),
                                        lambda s: f"/v1/tokens/{s.new_owner_token_id()}"),
    # Account pages: CSRF guards a browser session's posts; a bearer token is no ambient
    # credential, so its posts need none.
    ("tokens_page", "GET"): Row(signed_in(303, 200, 200, 200), lambda s: "/account/tokens"),
    ("create_token_page", "POST"): Row(signed_in(401, 201, 201, 201), lambda s: "/account/tokens",
                                       lambda s: {"data": {"display_name": "x"}}),
    ("revoke_token_page", "POST"): Row(signed_in(401, 404, 303, 404),
                                       lambda s: f"/account/tokens/{s.new_owner_token_id()}/revoke"),
    # Webhooks: one's own endpoints; another account's is 404 as if there were none.
    ("create_webhook", "POST"): Row(signed_in(401, 201, 201, 201), lambda s: "/v1/webhooks",
                                    lambda s: {"json": {"url": "http://127.0.0.1:9/matrix"}}),
    ("list_webhooks", "GET"): Row(signed_in(401, 200, 200, 200), lambda s: "/v1/webhooks"),
    ("get_webhook", "GET"): Row(signed_in(401, 404, 200, 200), lambda s: f"/v1/webhooks/{s.webhook_id}"),
    ("delete_webhook", "DELETE"): Row(signed_in(401, 404, 204, 204),
                                      lambda s: f"/v1/webhooks/{s.new_owner_webhook_id()}"),
    ("list_deliveries", "GET"): Row(signed_in(401, 404, 200, 200),
                                    lambda s: f"/v1/webhooks/{s.webhook_id}/deliveries"),
    ("redeliver", "POST"): Row(signed_in(401, 404, 202, 202),
                               lambda s: f"/v1/webhooks/{s.webhook_id}/deliveries/{s.delivery_id}:redeliver"),
    # Pages.
    ("home", "GET"): Row(each(200), lambda s: "/"),
    # A private video's page asks an anonymous visitor to sign in (401), is none for others.
    ("watch_page", "GET"): Row(each(200), lambda s: f"/watch/{s.video_id}", private=signed_in(401, 404, 200, 200)),
    ("upload_page", "GET"): Row(signed_in(303, 200, 200, 200), lambda s: "/upload"),
    ("my_videos_page", "GET"): Row(signed_in(303, 200, 200, 200), lambda s: "/my/videos"),
    # "My videos": the owner's edit form and delete confirmation; their posts are forms, so a
    # bearer token needs no CSRF token. Another account: 403, or 404 for a private video.
    ("edit_video_page", "GET"): Row(signed_in(303, 403, 200, 200), lambda s: f"/my/videos/{s.video_id}/edit",
                                    private=signed_in(303, 404, 200, 200)),
    ("edit_video_form", "POST"): Row(signed_in(401, 403, 303, 303), lambda s: f"/my/videos/{s.video_id}/edit",
                                     lambda s: {"data": {"title": "Matrix clip", "description": "edited by a form",
                                                         "privacy": s.privacy}},
                                     private=signed_in(401, 404, 303, 303)),
    ("delete_video_page", "GET"): Row(signed_in(303, 403, 200, 200), lambda s: f"/my/videos/{s.video_id}/delete",
                                      private=signed_in(303, 404, 200, 200)),
    ("delete_video_form", "POST"): Row(signed_in(401, 403, 303, 303),
                                       lambda s: f"/my/videos/{s.new_video_id()}/delete",
                                       private=signed_in(401, 404, 303, 303)),
    # Open sign-up is off by default: the routes do not exist.
    ("sign_up_page", "GET"): Row(each(404), lambda s: "/account/sign-up"),
    ("sign_up", "POST"): Row(each(404), lambda s: "/account/sign-up",
                             lambda s: {"data": {"username": "matrix-new", "email": "m@example.org",
                                                 "password": "a long enough password"}}),
}
