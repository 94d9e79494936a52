"""The account pages over HTTP, on a running platform (embedded backends) with open sign-up
on: signing up (CSRF, taken usernames, weak passwords, throttling), "My videos" (status,
privacy, views; the edit form with its etag, the delete confirmation; another account sees
none of it) and the watch page of a deleted, an unknown and a private video. With open
sign-up off (the default) the sign-up routes answer 404 and nothing links to them.

No video is transcoded here: editing and deleting work on a video in any status. The
browser flow (Chromium) is in tests/test_browser_pages.py."""
from __future__ import annotations

import re

import httpx
import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from longtail_cli.launcher import Platform, free_port
from longtail_common.adapters.sqlite_viewcounts import SqliteViewCountStore
from longtail_common.config import Config
from longtail_common.ports import DailyViews
from tests.auth_helpers import bearer, with_password

pytestmark = pytest.mark.slow

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
ETAG_RE = re.compile(r'name="etag" value="([^"]+)"')
MAX_FAILURES = 3
PASSWORD = "a long enough password"


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    cfg = Config(data_dir=str(tmp_path_factory.mktemp("account-pages")))
    cfg.auth.open_signup = True
    cfg.auth.sign_in_max_failures = MAX_FAILURES
    with Platform(cfg, gateway_port=free_port(), transcoder_workers=1) as p:
        yield p


def csrf_of(page: httpx.Response) -> str:
    match = CSRF_RE.search(page.text)
    assert match, page.text[:500]
    return match.group(1)


def signed_in_browser(platform, username: str) -> httpx.Client:
    """A client signed in through the sign-in form (a session cookie, like a browser)."""
    with_password(platform.cfg, username, PASSWORD)
    client = httpx.Client(base_url=platform.gateway_url, timeout=60)
    done = client.post("/account/sign-in", data={"username": username, "password": PASSWORD,
                                                 "csrf_token": csrf_of(client.get("/account/sign-in"))})
    assert done.status_code == 303, done.text
    return client


def sign_up(client: httpx.Client, **form) -> httpx.Response:
    return client.post("/account/sign-up", data={"csrf_token": csrf_of(client.get("/account/sign-up")), **form})


def error_of(page: httpx.Response, element: str) -> str:
    match = re.search(rf'<p id="{element}"[^>]*>([^<]*)</p>', page.text)
    assert match, page.text[:800]
    return match.group(1)


def test_sign_up_is_404_and_unlinked_when_off(tmp_path):
    # In process: nothing here calls a service (open_signup is off by default).
    cfg = Config(data_dir=str(tmp_path))
    cfg.mesh.tls = False  # a channel is opened (never called): no certificates here
    client = TestClient(create_app(cfg))
    assert client.get("/account/sign-up").status_code == 404
    assert client.post("/account/sign-up", data={"username": "x", "password": "y"}).status_code == 404
    page = client.get("/account/sign-in")
    assert page.status_code == 200 and "/account/sign-up" not in page.text


def test_sign_up_makes_an_account_and_signs_in(platform):
    with httpx.Client(base_url=platform.gateway_url, timeout=60) as client:
        assert 'id="sign-up-link"' in client.get("/account/sign-in").text
        forged = client.post("/account/sign-up", data={"username": "newbie", "email": "n@example.org",
                                                       "password": PASSWORD, "csrf_token": "0" * 64})
        assert forged.status_code == 403 and "lt_session" not in client.cookies
        done = sign_up(client, username="Newbie", email="newbie@example.org", password=PASSWORD, next="/my/videos")
        assert done.status_code == 303 and done.headers["location"] == "/my/videos", done.text
        assert client.get("/v1/me").json()["username"] == "newbie"  # names are lower case
        assert 'id="no-videos"' in client.get("/my/videos").text
    with httpx.Client(base_url=platform.gateway_url, timeout=60) as again:  # the password works from now on
        signed = again.post("/account/sign-in", data={"username": "newbie", "password": PASSWORD,
                                                      "csrf_token": csrf_of(again.get("/account/sign-in"))})
        assert signed.status_code == 303


def test_sign_up_refusals_say_why_and_are_throttled(platform):
    with_password(platform.cfg, "taken-name", PASSWORD)
    with httpx.Client(base_url=platform.gateway_url, timeout=60) as client:
        taken = sign_up(client, username="taken-name", email="t@example.org", password=PASSWORD)
        assert taken.status_code == 409 and "“taken-name” is taken" in error_of(taken, "sign-up-error")
        weak = sign_up(client, username="weakling", email="w@example.org", password="password123")
        assert weak.status_code == 400 and "too weak" in error_of(weak, "sign-up-error")
        assert 'value="weakling"' in weak.text  # what was typed is kept, but never the password
        named = sign_up(client, username="weakling", email="w@example.org", password="weakling2026")
        assert named.status_code == 400 and "too weak" in error_of(named, "sign-up-error")
        # MAX_FAILURES failed attempts from this address: the next waits, even a good one.
        throttled = sign_up(client, username="patient", email="p@example.org", password=PASSWORD)
        assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) > 0
        assert client.get("/v1/me").status_code == 401


def create_video(client: httpx.Client, title: str, privacy: str = "public", channel: str = "pages-chan") -> str:
    made = client.post("/v1/videos", json={"title": title, "channel_id": channel, "size_bytes": 4,
                                           "privacy": privacy})
    assert made.status_code == 201, made.text
    return made.json()["id"]


def test_watch_page_of_deleted_unknown_and_private_videos(platform):
    base = platform.gateway_url
    with httpx.Client(base_url=base, timeout=60, headers=bearer(platform.cfg, "watch-owner")) as owner, \
            httpx.Client(base_url=base, timeout=60, headers=bearer(platform.cfg, "watch-other")) as other, \
            httpx.Client(base_url=base, timeout=60) as anonymous:
        gone = create_video(owner, "soon gone", channel="watch-chan")
        assert anonymous.get(f"/watch/{gone}").status_code == 200
        assert owner.delete(f"/v1/videos/{gone}").status_code == 204
        for client in (anonymous, other, owner):
            page = client.get(f"/watch/{gone}")
            assert page.status_code == 404 and 'id="not-found"' in page.text
            assert client.get(f"/v1/videos/{gone}").status_code == 404
        assert anonymous.get("/watch/NoSuchVideo1").status_code == 404

        private = create_video(owner, "only mine", privacy="private", channel="watch-chan")
        asked = anonymous.get(f"/watch/{private}")
        assert asked.status_code == 401 and 'id="private-video"' in asked.text
        assert f'href="/account/sign-in?next=%2Fwatch%2F{private}"' in asked.text
        assert "only mine" not in asked.text
        hidden = other.get(f"/watch/{private}")
        assert hidden.status_code == 404 and "only mine" not in hidden.text
        assert owner.get(f"/watch/{private}").status_code == 200
        # The gateway's video cache serves every caller: what an anonymous read got (404) is
        # not what the owner gets, nor the other way round.
        assert anonymous.get(f"/v1/videos/{private}").status_code == 404
        assert owner.get(f"/v1/videos/{private}").status_code == 200
        assert other.get(f"/v1/videos/{private}").status_code == 404


def test_my_videos_lists_status_privacy_and_views(platform):
    creator = signed_in_browser(platform, "pages-creator")
    other = signed_in_browser(platform, "pages-other")
    header = {"X-CSRF-Token": csrf_of(creator.get("/my/videos"))}
    public = creator.post("/v1/videos", headers=header, json={"title": "Listed one", "channel_id": "pages-chan",
                                                               "size_bytes": 4}).json()["id"]
    private = creator.post("/v1/videos", headers=header, json={"title": "Hidden one", "channel_id": "pages-chan",
                                                                "size_bytes": 4, "privacy": "private"}).json()["id"]
    # The count placement keeps from accepted "start" beacons (its views consumer's store).
    counts = SqliteViewCountStore(platform.cfg.data_path / "viewcounts.sqlite3")
    try:
        counts.apply_views("tests/0", 1, [DailyViews(public, "US", "2026-01-01", 3, 1000),
                                          DailyViews(public, "JP", "2026-01-02", 4, 1000)])
    finally:
        counts.close()
    page = creator.get("/my/videos")
    assert page.status_code == 200
    rows = {m.group(1): m.group(0) for m in re.finditer(r'<tr data-video-id="([^"]+)">.*?</tr>', page.text)}
    assert set(rows) == {public, private}
    assert '<td class="privacy">public</td>' in rows[public] and '<td class="views">7</td>' in rows[public]
    assert '<td class="privacy">private</td>' in rows[private] and '<td class="views">0</td>' in rows[private]
    assert '<td class="status">UPLOADING</td>' in rows[public]
    assert f'href="/my/videos/{public}/edit"' in rows[public] and f'href="/my/videos/{public}/delete"' in rows[public]

    others = other.get("/my/videos")
    assert others.status_code == 200 and public not in others.text and private not in others.text
    assert other.get(f"/my/videos/{private}/edit").status_code == 404
    assert other.get(f"/my/videos/{public}/edit").status_code == 403
    assert "Hidden one" not in other.get(f"/my/videos/{private}/delete").text
    for client in (creator, other):
        client.close()


def test_edit_form_checks_csrf_etag_and_input(platform):
    creator = signed_in_browser(platform, "form-creator")
    other = signed_in_browser(platform, "form-other")
    header = {"X-CSRF-Token": csrf_of(creator.get("/my/videos"))}
    vid = creator.post("/v1/videos", headers=header, json={"title": "Before", "channel_id": "form-chan",
                                                            "size_bytes": 4}).json()["id"]
    form = creator.get(f"/my/videos/{vid}/edit")
    fields = {"csrf_token": csrf_of(form), "etag": ETAG_RE.search(form.text).group(1)}
    edit = {"title": "After", "description": "new words", "privacy": "unlisted"}

    assert creator.post(f"/my/videos/{vid}/edit", data={**edit, "etag": fields["etag"]}).status_code == 403
    stolen = other.post(f"/my/videos/{vid}/edit", data={**edit, "csrf_token": csrf_of(other.get("/my/videos"))})
    assert stolen.status_code == 403
    empty = creator.post(f"/my/videos/{vid}/edit", data={**fields, **edit, "title": " "})
    assert empty.status_code == 400 and "title" in error_of(empty, "edit-error")
    bad = creator.post(f"/my/videos/{vid}/edit", data={**fields, **edit, "privacy": "secret"})
    assert bad.status_code == 400 and "privacy" in error_of(bad, "edit-error")

    saved = creator.post(f"/my/videos/{vid}/edit", data={**fields, **edit})
    assert saved.status_code == 303 and saved.headers["location"] == "/my/videos?done=saved"
    video = creator.get(f"/v1/videos/{vid}").json()
    assert (video["title"], video["description"], video["privacy"]) == ("After", "new words", "unlisted")
    # The same form again, at the etag it was opened at: the video has changed since.
    stale = creator.post(f"/my/videos/{vid}/edit", data={**fields, **edit, "title": "Lost update"})
    assert stale.status_code == 409 and "changed elsewhere" in error_of(stale, "edit-error")
    assert 'value="After"' in stale.text and creator.get(f"/v1/videos/{vid}").json()["title"] == "After"

    confirm = creator.get(f"/my/videos/{vid}/delete")
    assert confirm.status_code == 200 and 'id="delete-confirm"' in confirm.text
    assert creator.get(f"/v1/videos/{vid}").status_code == 200  # asking is not deleting
    assert creator.post(f"/my/videos/{vid}/delete", data={"csrf_token": fields["csrf_token"],
                                                          "etag": fields["etag"]}).status_code == 409
    refused = other.post(f"/my/videos/{vid}/delete", data={"csrf_token": csrf_of(other.get("/my/videos"))})
    assert refused.status_code == 403
    deleted = creator.post(f"/my/videos/{vid}/delete", data={"csrf_token": csrf_of(confirm),
                                                             "etag": ETAG_RE.search(confirm.text).group(1)})
    assert deleted.status_code == 303 and deleted.headers["location"] == "/my/videos?done=deleted"
    assert creator.get(f"/v1/videos/{vid}").status_code == 404
    assert vid not in creator.get("/my/videos").text
    assert creator.get(f"/my/videos/{vid}/edit").status_code == 404
    for client in (creator, other):
        client.close()


def test_a_clients_host_header_stays_out_of_upload_urls(platform):
    headers = {**bearer(platform.cfg, "host-tester"), "Host": "evil.example"}
    for path, kwargs in (("/v1/videos", {"json": {"title": "t", "channel_id": "host-chan", "size_bytes": 4}}),
                         ("/v1/uploads", {"headers": {"Tus-Resumable": "1.0.0", "Upload-Length": "4",
                                                      "Upload-Metadata": "title dA==,channel_id aG9zdC1jaGFu"}})):
        made = httpx.post(f"{platform.gateway_url}{path}", **{**kwargs, "headers": {**headers, **kwargs.get("headers", {})}},
                          timeout=30)
        assert made.status_code == 201, made.text
        assert made.headers["Location"].startswith(f"{platform.gateway_url}/v1/uploads/"), made.headers["Location"]
        assert "evil" not in made.text


def test_channels_are_made_by_their_owner(platform):
    base = platform.gateway_url
    mine, theirs = bearer(platform.cfg, "chan-owner"), bearer(platform.cfg, "chan-other")
    with httpx.Client(base_url=base, timeout=30) as client:
        assert client.post("/v1/channels", json={"id": "made-by-api"}).status_code == 401
        made = client.post("/v1/channels", json={"id": "made-by-api", "name": "Made by the API"}, headers=mine)
        assert made.status_code == 201 and made.json() == {"id": "made-by-api", "name": "Made by the API",
                                                           "page_url": "/channel/made-by-api"}
        assert client.post("/v1/channels", json={"id": "made-by-api"}, headers=theirs).status_code == 409
        assert client.get("/v1/channels/made-by-api").json()["name"] == "Made by the API"
        refused = client.post("/v1/videos", json={"title": "t", "channel_id": "made-by-api"}, headers=theirs)
        assert refused.status_code == 403
        assert client.post("/v1/videos", json={"title": "t", "channel_id": "made-by-api"}, headers=mine).status_code \
            == 201
        page = client.get("/channel/made-by-api")  # its video is not READY: listed nowhere yet
        assert page.status_code == 200 and 'id="no-videos"' in page.text and "Made by the API" in page.text
        assert client.get("/channel/no-such-channel").status_code == 404
        # Ids are matched whole: a trailing newline is not a valid end (issue 22: `$` let it pass).
        for bad in ("made-by-api\n", "x%0a"):
            assert client.post("/v1/channels", json={"id": bad}, headers=mine).status_code == 422
        assert client.get("/v1/videos", params={"channel_id": "made-by-api\n"}).status_code == 400
        assert client.get("/v1/channels/made-by-api%0A").status_code == 404
        assert client.get("/v1/videos/abc%0A").status_code == 404
        assert client.post("/v1/videos", json={"title": "t", "channel_id": "made-by-api\n"},
                           headers=mine).status_code == 422


def test_no_password_reaches_a_log_or_a_trace(platform):
    """Last in the file: the passwords this module typed, in no process's log or trace."""
    written = [*platform.log_dir.glob("*.log"), *(platform.cfg.data_path / "traces").glob("*.jsonl")]
    text = "".join(path.read_text(errors="replace") for path in written)
    assert "created account newbie" in text  # the sign-up's own line: these are the right files
    for password in (PASSWORD, "password123", "weakling2026"):
        assert password not in text
