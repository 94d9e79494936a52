"""search_svc: search and browse over READY videos.

Its one job: keep a full-text index (embedded: SQLite FTS5) of the videos that are READY,
fed by the `video.published` topic, and answer SearchVideos / ListLatestVideos. Every
event is checked against metadata (a video not READY, or gone, is removed instead of
indexed), and every answer is re-checked, so a video that is not READY never appears.
"""
