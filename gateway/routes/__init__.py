"""The gateway's HTTP routes, one router per resource (create_app includes them in order):

- videos: create, read, list, and the watch payload
- views: player beacons to the `views` topic
- uploads: tus 1.0.0 resumable uploads
- media: origin and edge bytes, signed playlists
- health: the liveness probe
- pages: the browser pages, search and latest JSON, the house ad
"""
