"""The gateway's HTTP routes, one router per resource. create_app includes them in this
order; every one but media and health counts against the account rate limits
(`limit_account`): stream bytes and probes are not an account's calls.

- videos: create, read, list, edit, delete, the watch payload and the stats
- channels: create and read a channel (`/v1/channels`), its page
- captions: upload, list and delete a video's captions (WebVTT, SRT converted)
- audio_tracks: upload, list and delete a video's alternate audio tracks
- downloads: ask for and list a video's download files (MP4, M4A), and serve them signed
- thumbnails: a thumbnail at any moment, the poster (picked by time or uploaded), the preview
- views: player beacons to the `views` topic
- uploads: tus 1.0.0 resumable uploads
- account: sign in and out (password, OIDC), sign-up, set a password, API tokens, `/v1/me`
- webhooks: creators' webhook endpoints and their delivery log (`:redeliver`)
- media: origin and edge bytes, signed playlists
- health: the load balancer's probe (`/healthz`)
- pages: the browser pages (home, watch, upload), the search and latest JSON, the house ad
- my_videos: the "My videos" pages (list, edit, delete)
"""
