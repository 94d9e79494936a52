"""Issue 22 end to end in headless Chromium (Playwright with the system executable, as
tests/test_browser_pages.py): the gateway signs in through a real Keycloak (the realm of
deploy/keycloak/), the signed-in browser uploads a clip from the upload page, the video
becomes READY and its watch page offers it; set private from "My videos", a second browser
context signed in as another account gets no such video and an anonymous one is asked to
sign in; public again, search finds it; deleted from "My videos" after its confirmation,
nothing of it is left in any bucket, edge, index or count.

Run on the embedded backends and on Kafka, Cassandra and S3Proxy. Needs the Keycloak test
server (`real`), Java for the others, and Chromium; skipped locally without them."""
from __future__ import annotations

import copy
import re
import time
import uuid

import httpx
import pytest

from longtail_cli.cli import make_test_clip
from longtail_cli.launcher import Platform, free_port
from longtail_common.config import Config
from tests.real_servers import real_config
from tests.test_browser_pages import browser, new_page  # noqa: F401 (the browser fixture)
from tests.test_video_lifecycle_e2e import counted, indexed, leftovers

pytestmark = [pytest.mark.real, pytest.mark.slow]

DESKTOP = {"width": 1280, "height": 800}
READY_TIMEOUT_MS = 300_000  # an upper bound for transcoding on a busy 2-core machine, not a target


@pytest.fixture(scope="module", params=["embedded", "kafka-cassandra-s3"])
def platform(request, keycloak_server, browser, tmp_path_factory):  # noqa: F811
    """The platform on the embedded backends, and on Kafka, Cassandra and S3Proxy."""
    data_dir = str(tmp_path_factory.mktemp("browser-oidc"))
    if request.param == "embedded":
        cfg = Config(data_dir=data_dir)
    else:
        cfg = copy.deepcopy(real_config(request.getfixturevalue("real_servers")))
        tag = uuid.uuid4().hex[:8]
        cfg.data_dir, cfg.scylla.keyspace, cfg.s3.bucket_prefix = data_dir, f"longtail_oidc_{tag}", f"oidc{tag}-"
    cfg.auth.oidc.issuer = keycloak_server.issuer
    cfg.auth.oidc.client_id = keycloak_server.client_id
    cfg.auth.oidc.client_secret = keycloak_server.client_secret
    cfg.auth.oidc.display_name = "Keycloak"
    p = Platform(cfg, gateway_port=free_port(), transcoder_workers=1)
    p.start(timeout_s=180)  # on Cassandra, the first start creates the keyspace and the topics
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("clips") / "oidc-clip.mp4"
    make_test_clip(str(path), seconds=4, height=240)
    return str(path)


def sign_in_with_keycloak(page, server, username: str, next_url: str) -> None:
    """The sign-in page's "Sign in with Keycloak" -> Keycloak's own login form -> back signed in."""
    page.goto(f"/account/sign-in?next={next_url}")
    page.click("#oidc-sign-in")
    page.wait_for_url(f"{server.issuer}/**")
    user = server.users[username]
    page.fill("#username", user.username)
    page.fill("#password", user.password)
    page.click("#kc-login")
    page.wait_for_url(f"**{next_url}")


def search_ids(base: str, q: str) -> list[str]:
    found = httpx.get(f"{base}/v1/search", params={"q": q}, timeout=30)
    assert found.status_code == 200, found.text
    return [v["id"] for v in found.json()["videos"]]


def eventually(check, what: str, timeout_s: float = 60):
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def set_privacy(page, video_id: str, privacy: str) -> None:
    """From the "My videos" page: Edit, choose the privacy, Save."""
    page.goto("/my/videos")
    page.click(f"#my-videos tr[data-video-id='{video_id}'] a.edit")
    page.wait_for_url(f"**/my/videos/{video_id}/edit")
    page.select_option("select[name=privacy]", privacy)
    page.click("#edit-save")
    page.wait_for_url("**/my/videos?done=saved")
    assert page.inner_text(f"#my-videos tr[data-video-id='{video_id}'] .privacy") == privacy
    assert page.request.get(f"/v1/videos/{video_id}").json()["privacy"] == privacy


def test_keycloak_sign_in_upload_private_public_delete(browser, platform, keycloak_server, clip):  # noqa: F811
    base = platform.gateway_url
    word = "wombat" + uuid.uuid4().hex[:8]
    title = f"Keycloak upload {word}"
    page = new_page(browser, base, DESKTOP)
    sign_in_with_keycloak(page, keycloak_server, "alice", "/upload")
    assert page.inner_text("#signed-in-as") == "alice"
    me = page.request.get("/v1/me").json()
    assert me["username"] == "alice" and me["authenticated_by"] == "session"

    page.fill("input[name=title]", title)
    page.fill("textarea[name=description]", "Uploaded through a Keycloak sign-in.")
    page.fill("input[name=channel_id]", "alicechan")
    page.set_input_files("input[name=file]", clip)
    page.click("#upload-submit")
    page.wait_for_selector("#watch-link", state="visible", timeout=READY_TIMEOUT_MS)
    video_id = page.evaluate("window.longtailUpload.videoId")
    assert video_id and re.fullmatch(r"[A-Za-z0-9_-]+", video_id)
    assert page.request.get(f"/v1/videos/{video_id}").json()["status"] == "READY"

    page.click("#watch-link")
    page.wait_for_url(f"**/watch/{video_id}")
    page.wait_for_function(f"document.querySelector('#title').textContent === {title!r}")
    page.wait_for_selector("#start:enabled")  # the watch call answered: the player can start
    assert video_id in search_ids(base, word)

    # Private: another account (bob, signed in through Keycloak too) finds no such video; an
    # anonymous visitor is asked to sign in; the owner still watches it.
    set_privacy(page, video_id, "private")
    bob = new_page(browser, base, DESKTOP)
    sign_in_with_keycloak(bob, keycloak_server, "bob", "/my/videos")
    assert bob.request.get("/v1/me").json()["username"] == "bob"
    assert bob.goto(f"/watch/{video_id}").status == 404
    assert bob.request.get(f"/v1/videos/{video_id}").status == 404
    anonymous = new_page(browser, base, DESKTOP)
    assert anonymous.goto(f"/watch/{video_id}").status == 401
    assert anonymous.is_visible("#private-video")
    anonymous.click("#sign-in-link")
    anonymous.wait_for_url(f"**/account/sign-in?next=%2Fwatch%2F{video_id}")
    assert video_id not in search_ids(base, word)
    assert page.goto(f"/watch/{video_id}").status == 200
    page.wait_for_selector("#start:enabled")

    # Public again: search finds it, anyone may watch.
    set_privacy(page, video_id, "public")
    eventually(lambda: video_id in search_ids(base, word), "search to find it again")
    assert anonymous.goto(f"/watch/{video_id}").status == 200
    assert bob.goto(f"/watch/{video_id}").status == 200

    # Deleted from "My videos", after its confirmation: gone at once from every answer, and
    # every trace of it soon after. Another account may not delete it.
    assert bob.request.delete(f"/v1/videos/{video_id}", headers={
        "X-CSRF-Token": bob.get_attribute("input[name=csrf_token]", "value")}).status == 403
    page.goto("/my/videos")
    page.click(f"#my-videos tr[data-video-id='{video_id}'] a.delete")
    page.click("#delete-confirm")
    page.wait_for_url("**/my/videos?done=deleted")
    assert page.locator(f"#my-videos tr[data-video-id='{video_id}']").count() == 0
    assert page.request.get(f"/v1/videos/{video_id}").status == 404
    assert anonymous.goto(f"/watch/{video_id}").status == 404 and anonymous.is_visible("#not-found")
    assert anonymous.request.get(f"/v1/videos/{video_id}/watch").status == 404
    eventually(lambda: not leftovers(platform, video_id) and not indexed(platform, video_id)
               and not counted(platform, video_id), "every trace of the video to go")
    assert video_id not in search_ids(base, word)
    assert all(v["id"] != video_id for v in httpx.get(f"{base}/v1/latest", timeout=30).json()["videos"])
    assert not page.errors, page.errors
    for each in (page, bob, anonymous):
        each.context.close()
