"""placement_svc: decides where each video is served from, per CDN region.

Its one job: when a transcode finishes, decide per region (CDN edge or origin), write the
renditions and decisions into metadata and mark the video READY exactly once, and only
then publish `video.published`. The learned daily model lives in `placement_svc.model`.
"""
