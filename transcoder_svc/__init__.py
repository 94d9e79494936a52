"""transcoder_svc: the transcoder fleet's worker.

Its one job: consume `transcode.requests`, probe and transcode the raw upload into the
adaptive ladder with ffmpeg, write every variant to the media bucket under
`videos/<id>/<codec>/<resolution>/...`, and publish a TranscodeResult on
`transcode.results`. Bad input ends the video FAILED with a reason; the raw upload is
kept. Any number of workers may run; a killed worker's job is redelivered to another.

Modules: probe.py (what a source is, the limits), ladder.py (the rungs and where cuts
fall), ffmpeg_graphs.py (every ffmpeg graph, built with ffmpeg-python, and the one run
helper), packaging.py (HLS master, DASH MPD, storyboard cues), pertitle.py (per-title
bitrates from measured VMAF), worker.py (the jobs).
"""
