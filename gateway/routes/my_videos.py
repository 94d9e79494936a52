"""The "My videos" pages: the signed-in account's videos (status, privacy, views), the form
that edits one (title, description, privacy) and the confirmation that deletes one.

Plain form posts (no script), each with the page's CSRF token (checked when the session is
authenticated) and the etag the form was rendered at: a save or delete over a newer edit
is refused (409) and shows the video as it now is. The edits and deletes go through the
same code as the REST API's PATCH and DELETE (gateway/routes/videos.py), so the same
ownership rules hold: another account's video is "not found" when private, forbidden
otherwise.
"""
from __future__ import annotations

import logging

import grpc
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import video_pb2
from longtail.placement.v1 import placement_service_pb2 as ppb
from longtail_common.mesh_identity import acting_as
from gateway.api_docs import html_responses
from gateway.auth.principal import GATEWAY, Principal
from gateway.dependencies import CurrentPrincipal, Links, MetadataStub, PageViewer, Pages, RequiredPrincipal
from gateway.errors import ERROR_DESCRIPTIONS, SERVICE_ERRORS, ApiError, ErrorBody, error_responses, grpc_call
from gateway.html_pages import Viewer, delete_video_body, edit_video_body, message_body, my_videos_body
from gateway.routes.account import REDIRECT, SIGNED_IN_PAGE, field, sign_in_redirect
from gateway.routes.pages import owned_channels
from gateway.routes.videos import (
    EDITABLE_FIELDS,
    MAX_DESCRIPTION,
    EditVideoBody,
    load_video,
    remove_video,
    update_video,
)
from gateway.video_access import require_owner

log = logging.getLogger("gateway.my_videos")

MY_VIDEOS_PER_CHANNEL = 100
NOTICES = {"saved": "Saved.", "deleted": "Deleted: its files and counts go within seconds."}
# An owner's page or form: 303 to sign in, 403/404 for another account's video.
VIDEO_PAGE = {**SIGNED_IN_PAGE, **html_responses(403, 404)}
FORM_POST = {**REDIRECT, **html_responses(400, 404, 409), **error_responses(401, 422, *SERVICE_ERRORS),
             # Another account's video (a page), or a session's post without its CSRF token (JSON).
             403: {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[403],
                   "content": {"text/html": {"schema": {"type": "string"}}}}}

router = APIRouter()


async def view_counts(request: Request, videos: list[video_pb2.Video]) -> dict[str, int] | None:
    """Each video's views, from placement_svc's counts; None (the page shows no counts) when
    it cannot answer now: the list itself does not depend on it."""
    if not videos:
        return {}
    try:
        with acting_as(GATEWAY):  # the account's own videos, listed above
            counted = await request.app.state.links.placement().BatchGetViewCounts(
                ppb.BatchGetViewCountsRequest(video_ids=[v.id for v in videos]), timeout=5)
    except grpc.aio.AioRpcError as exc:
        log.warning("view counts unavailable: %s %s", exc.code(), exc.details())
        return None
    return dict(counted.views)


@router.get("/my/videos", responses=SIGNED_IN_PAGE)
async def my_videos_page(request: Request, pages: Pages, viewer: PageViewer, principal: CurrentPrincipal,
                         metadata: MetadataStub, done: str = ""):
    """Every video of the signed-in account's channels, whatever its status, newest first."""
    if principal is None:
        return sign_in_redirect(request)
    videos: list[video_pb2.Video] = []
    for channel in await owned_channels(metadata, principal.account_id):
        listed = await grpc_call(metadata.ListVideos(
            mpb.ListVideosRequest(channel_id=channel.id, page_size=MY_VIDEOS_PER_CHANNEL, include_non_public=True),
            timeout=15))
        videos.extend(listed.videos)
    videos.sort(key=lambda v: v.create_time.ToNanoseconds(), reverse=True)
    body = my_videos_body(videos, await view_counts(request, videos), NOTICES.get(done, ""))
    return pages.page("My videos", body, viewer=viewer)


def refusal_page(pages, viewer: Viewer, err: ApiError) -> Response:
    """The page for another account's video (403) or none (404); other errors (a service
    away) keep their JSON answer."""
    if err.status not in (403, 404):
        raise err
    heading = "Not your video" if err.status == 403 else "Video not found"
    return pages.page(heading, message_body(heading, err.message, ("/my/videos", "My videos")), status=err.status,
                      viewer=viewer)


async def owned_video_or_page(request: Request, pages, viewer: Viewer, principal: Principal | None, metadata,
                              video_id: str) -> video_pb2.Video | Response:
    """What the edit and delete pages and forms begin with: the video, if the principal may
    change it; else the answer to give instead (sign in, or the 403/404 page)."""
    if principal is None:
        return sign_in_redirect(request)
    try:
        video = await load_video(metadata, video_id)
        require_owner(video, principal)
    except ApiError as err:
        return refusal_page(pages, viewer, err)
    return video


@router.get("/my/videos/{video_id}/edit", responses=VIDEO_PAGE)
async def edit_video_page(video_id: str, request: Request, pages: Pages, viewer: PageViewer,
                          principal: CurrentPrincipal, metadata: MetadataStub):
    video = await owned_video_or_page(request, pages, viewer, principal, metadata, video_id)
    if isinstance(video, Response):
        return video
    return pages.page("Edit video", edit_video_body(viewer, video), viewer=viewer)


@router.post("/my/videos/{video_id}/edit", status_code=303, response_class=RedirectResponse, responses=FORM_POST)
async def edit_video_form(video_id: str, request: Request, pages: Pages, viewer: PageViewer,
                          principal: RequiredPrincipal, metadata: MetadataStub):
    """Saves title, description and privacy; back to "My videos" (303), or the form again
    saying what was wrong (400), or that the video changed meanwhile (409)."""
    form = await request.form()
    video = await owned_video_or_page(request, pages, viewer, principal, metadata, video_id)
    if isinstance(video, Response):
        return video
    description = form.get("description", "")
    typed = {"title": field(form, "title").strip(), "privacy": field(form, "privacy"),
             "description": description[:MAX_DESCRIPTION + 1] if isinstance(description, str) else ""}

    def again(message: str, status: int, current: video_pb2.Video = video, keep_typed: bool = True) -> Response:
        body = edit_video_body(viewer, current, message, **(typed if keep_typed else {}))
        return pages.page("Edit video", body, status=status, viewer=viewer)

    try:
        body = EditVideoBody(**typed)
    except ValidationError as exc:
        reasons = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return again(f"Not saved: {reasons}.", 400)
    try:
        await update_video(request, metadata, video, body, list(EDITABLE_FIELDS), field(form, "etag"))
    except ApiError as err:
        if err.status == 400:
            return again(f"Not saved: {err.message}.", 400)
        if err.status != 409:
            raise
        current = await load_video(metadata, video_id)
        return again("Not saved: the video was changed elsewhere since this form was opened. "
                     "Here it is as it is now.", 409, current, keep_typed=False)
    return RedirectResponse("/my/videos?done=saved", status_code=303)


@router.get("/my/videos/{video_id}/delete", responses=VIDEO_PAGE)
async def delete_video_page(video_id: str, request: Request, pages: Pages, viewer: PageViewer,
                            principal: CurrentPrincipal, metadata: MetadataStub):
    """The confirmation: nothing is deleted until its form is posted."""
    video = await owned_video_or_page(request, pages, viewer, principal, metadata, video_id)
    if isinstance(video, Response):
        return video
    return pages.page("Delete video", delete_video_body(viewer, video), viewer=viewer)


@router.post("/my/videos/{video_id}/delete", status_code=303, response_class=RedirectResponse,
             responses=FORM_POST)
async def delete_video_form(video_id: str, request: Request, pages: Pages, viewer: PageViewer,
                            principal: RequiredPrincipal, metadata: MetadataStub, links: Links):
    form = await request.form()
    video = await owned_video_or_page(request, pages, viewer, principal, metadata, video_id)
    if isinstance(video, Response):
        return video
    try:
        await remove_video(request, links, metadata, video, field(form, "etag"))
    except ApiError as err:
        if err.status != 409:
            return refusal_page(pages, viewer, err)
        current = await load_video(metadata, video_id)
        message = "Not deleted: the video was changed elsewhere since you opened this page. Confirm again?"
        return pages.page("Delete video", delete_video_body(viewer, current, message), status=409, viewer=viewer)
    return RedirectResponse("/my/videos?done=deleted", status_code=303)
