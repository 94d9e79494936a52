"""The browser pages (home with latest videos and search, watch, and upload, the last for
a signed-in account only; "My videos" is in my_videos.py), the search and latest-videos JSON they share
with API clients, and the house ad clip.

Browse and search come from search_svc over its gRPC contract, which only ever returns
READY videos.
"""
from __future__ import annotations

import logging
import urllib.parse

import grpc
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse

from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import video_pb2
from longtail.search.v1 import search_service_pb2 as spb
from longtail.search.v1 import search_service_pb2_grpc as spb_grpc
from longtail_common.mesh_identity import acting_as
from longtail_common.ports import ObjectStore, is_valid_id
from gateway.api_docs import RANGE_HEADER, html_responses, media_responses, route_per_method
from gateway.auth.principal import GATEWAY
from gateway.dependencies import CurrentPrincipal, HouseAdClip, MetadataStub, Objects, PageViewer, Pages, SearchStub
from gateway.errors import GRPC_TO_HTTP, SERVICE_ERRORS, ApiError, error_responses, grpc_call
from gateway.html_pages import MAX_QUERY, card, esc, private_video_body, upload_body, watch_body
from gateway.routes.account import SIGNED_IN_PAGE, sign_in_redirect
from gateway.video_access import is_private, owns_channel
from gateway.media_links import media_url
from gateway.validation import require_page_token

log = logging.getLogger("gateway.pages")

# Search failures a client can act on keep their status; any other is a 500.
SEARCH_STATUSES = {code: GRPC_TO_HTTP[code] for code in (
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)}
HOME_PAGE_SIZE = 24

router = APIRouter()


async def run_search(search: spb_grpc.SearchServiceStub, q: str, page_size: int, page_token: str):
    """Matches for q, or the latest videos when q is empty; ApiError when search fails."""
    require_page_token(page_token)
    try:
        if q:
            return await search.SearchVideos(
                spb.SearchVideosRequest(query=q, page_size=page_size, page_token=page_token), timeout=15)
        return await search.ListLatestVideos(
            spb.ListLatestVideosRequest(page_size=page_size, page_token=page_token), timeout=15)
    except grpc.aio.AioRpcError as exc:
        status = SEARCH_STATUSES.get(exc.code(), 500)
        if status == 500:
            log.error("search error: %s %s", exc.code(), exc.details())
        raise ApiError(status, exc.code().name, exc.details() if status < 500 else "search is unavailable") from None


def poster_url(request: Request, objects: ObjectStore, r: spb.SearchResult) -> str | None:
    return media_url(request, objects, r.poster_object_key) if r.poster_object_key else None


def result_json(request: Request, objects: ObjectStore, r: spb.SearchResult) -> dict:
    return {
        "id": r.video_id,
        "title": r.title,
        "description": r.description,
        "channel": {"id": r.channel_id, "name": r.channel_name},
        "duration_seconds": round(r.duration_seconds, 3),
        "publish_time": r.publish_time.ToJsonString() if r.HasField("publish_time") else None,
        "poster_url": poster_url(request, objects, r),
        "watch_url": f"/watch/{r.video_id}",
    }


async def search_json(request: Request, objects: ObjectStore, search: spb_grpc.SearchServiceStub, q: str,
                      page_size: int, page_token: str) -> dict:
    if not 1 <= page_size <= 100:
        raise ApiError(400, "INVALID_ARGUMENT", "page_size must be between 1 and 100")
    resp = await run_search(search, q, page_size, page_token)
    return {"videos": [result_json(request, objects, r) for r in resp.results],
            "next_page_token": resp.next_page_token}


@router.get("/v1/search", responses=error_responses(400, 404, 422, *SERVICE_ERRORS))
async def search_videos(request: Request, objects: Objects, search: SearchStub, q: str = "", page_size: int = 20,
                        page_token: str = ""):
    """READY videos matching every word of `q` (prefixes too), best first."""
    q = q.strip()
    if not q:
        raise ApiError(400, "INVALID_ARGUMENT", "q is required (use /v1/latest to browse)")
    if len(q) > MAX_QUERY:
        raise ApiError(400, "INVALID_ARGUMENT", f"q is longer than {MAX_QUERY} characters")
    return await search_json(request, objects, search, q, page_size, page_token)


@router.get("/v1/latest", responses=error_responses(400, 404, 422, *SERVICE_ERRORS))
async def latest_videos(request: Request, objects: Objects, search: SearchStub, page_size: int = 20,
                        page_token: str = ""):
    """The most recently published READY videos."""
    return await search_json(request, objects, search, "", page_size, page_token)


@route_per_method(router, "/ads/house-preroll.mp4", ["GET", "HEAD"], openapi_extra=RANGE_HEADER, responses={
    **media_responses("video/mp4"), 400: {"description": "Malformed Range.", "content": {"text/plain": {}}},
    416: {"description": "Range outside the clip.", "content": {"text/plain": {}}}})
async def house_ad(clip: HouseAdClip):
    return FileResponse(await clip.path(), media_type="video/mp4", headers={"Cache-Control": "public, max-age=86400"})


@router.get("/", response_class=HTMLResponse, responses=html_responses(400, 404, 429, 503, 504))
async def home(request: Request, objects: Objects, search: SearchStub, pages: Pages, viewer: PageViewer,
               q: str = "", page_token: str = ""):
    q = q.strip()[:MAX_QUERY]
    heading = f"Results for “{esc(q)}”" if q else "Latest videos"
    try:
        resp = await run_search(search, q, HOME_PAGE_SIZE, page_token)
    except ApiError as err:
        message = "Type a word to search for." if err.status == 400 and q else err.message
        body = f'<h1>{heading}</h1><p role="status" data-kind="error">{esc(message)}</p>'
        return pages.page("Search" if q else "Home", body, q=q, status=err.status, viewer=viewer)
    if resp.results:
        items = "\n".join(card(r, poster_url(request, objects, r)) for r in resp.results)
        listing = f'<ul class="grid" id="results" aria-label="{"Search results" if q else "Latest videos"}">{items}</ul>'
    elif q:
        listing = '<p id="no-results">No videos match. Try another word.</p>'
    else:
        listing = '<p id="no-results">No videos yet. <a href="/upload">Upload the first one</a>.</p>'
    more = ""
    if resp.next_page_token:
        params = urllib.parse.urlencode({k: v for k, v in (("q", q), ("page_token", resp.next_page_token)) if v})
        more = f'<p><a href="/?{esc(params)}">More videos</a></p>'
    return pages.page(f"Search: {q}" if q else "Home", f"<h1>{heading}</h1>\n{listing}\n{more}", q=q, script="home.js",
                      viewer=viewer)


@router.get("/watch/{video_id}", response_class=HTMLResponse, responses=html_responses(401, 404))
async def watch_page(video_id: str, pages: Pages, viewer: PageViewer, metadata: MetadataStub,
                     principal: CurrentPrincipal):
    """The player; "not found" (404) for a video that does not exist (or no longer: a
    deleted one), and for a private video, a sign-in invitation to an anonymous visitor (401)
    and "not found" to other accounts. Any other outcome (metadata away) is left to the
    player, which asks the watch call and says what it answers."""
    if not is_valid_id(video_id):
        return not_found_page(pages, viewer)
    try:
        with acting_as(GATEWAY):  # as itself: metadata hides a private video from the visitor
            video = await metadata.GetVideo(mpb.GetVideoRequest(id=video_id), timeout=15)
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return not_found_page(pages, viewer)
        video = None
    if video is not None and is_private(video) and not owns_channel(principal, video.channel):
        if principal is None:
            return pages.page("Private video", private_video_body(video_id), status=401, viewer=viewer)
        return not_found_page(pages, viewer)
    return pages.page("Watch", watch_body(video_id), script="watch.js", viewer=viewer)


def not_found_page(pages, viewer) -> HTMLResponse:
    return pages.page("Not found", '<h1 id="not-found">Video not found</h1>\n<p>It does not exist, or no longer: '
                      '<a href="/">see the latest videos</a>.</p>', status=404, viewer=viewer)


async def owned_channels(metadata, account_id: str) -> list[video_pb2.Channel]:
    listed = await grpc_call(metadata.ListChannels(mpb.ListChannelsRequest(owner_account_id=account_id), timeout=15))
    return list(listed.channels)


@router.get("/upload", responses=SIGNED_IN_PAGE)
async def upload_page(request: Request, pages: Pages, viewer: PageViewer, principal: CurrentPrincipal,
                      metadata: MetadataStub):
    if principal is None:
        return sign_in_redirect(request)
    channels = await owned_channels(metadata, principal.account_id)
    channel = channels[0].id if channels else principal.username
    return pages.page("Upload", upload_body(channel), script="upload.js", viewer=viewer)
