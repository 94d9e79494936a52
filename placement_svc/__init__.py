"""placement_svc: decides where each video is served from, per CDN region.

Its one job: when a transcode finishes, decide per region (CDN edge or origin), write the
renditions and decisions into metadata and mark the video READY exactly once, and only
then publish `video.published`. Around it: the `views` consumer that counts player
beacons (views.py), the daily job that retrains the model and re-decides every video
(`longtail placement run`, daily.py), the edge pushes and evictions (edge.py), codec
upgrades for popular videos, the saved models (modelstore.py) and the metrics (metrics.py).
The learned model lives in `placement_svc.model`; offline research (simulator, evaluation
harness, baseline policies, report, `longtail placement evaluate`) in `placement_research`.
"""
