"""gateway: the thin REST front door (FastAPI) over the gRPC services.

Its one job: speak HTTP/JSON and tus to clients, call metadata_svc, upload_svc and
search_svc over gRPC, and in the embedded setup serve stream bytes from origin (and the
edges). Layout:

- app.py: create_app, the factory (state, error handlers, routers, instrumentation)
- routes/: one APIRouter per resource (videos, views, uploads, media, pages, health)
- dependencies.py: config, object store and service stubs as FastAPI dependencies
- errors.py: ApiError and the one JSON error shape
- validation.py: id and region checks (patterns from longtail_common.ports)
- playback.py: which codec, protocol and audio a client is handed
- video_json.py, media_links.py: a video's JSON; presigned/origin URLs, signed playlists
- video_cache.py: this process's cache of videos and their rendered payloads, kept fresh
  by the video.changed topic
- html_pages.py, house_ad.py: the pages' HTML; the generated house ad clip
- instrumentation.py: OpenTelemetry for the HTTP side
- static/: the built web assets (generated from web/ by `make web`)
"""
