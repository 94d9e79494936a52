"""The automatic captions job (`TranscodeRequest.automatic_captions`, asked by placement
once a video is READY when `transcoder.automatic_captions` is on): the video's speech to a
WebVTT caption marked automatic, stored as uploads are (longtail_common/captions.py) and
recorded in metadata_svc. Nothing is encoded and no TranscodeResult is published.

Idempotent: a video that already has a caption in the language (uploaded, or automatic
from an earlier delivery) is left alone; metadata_svc refuses an automatic caption over an
uploaded one anyway.
"""
from __future__ import annotations

import logging
import pathlib
import shutil
import tempfile
import uuid

import grpc

from longtail.events.v1 import events_pb2
from longtail.metadata.v1 import caption_pb2
from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import video_pb2
from longtail_common.captions import caption_objects, cues_to_vtt, store_caption_files
from longtail_common.ports import MEDIA_BUCKET
from transcoder_svc import asr, probe
from transcoder_svc.jobs.base import WorkerContext
from transcoder_svc.jobs.families import H264
from transcoder_svc.jobs.upgrade import CodecUpgradeJob
from transcoder_svc.metrics import step

log = logging.getLogger("transcoder_svc")


def automatic_caption(ctx: WorkerContext, metadata, request: events_pb2.TranscodeRequest,
                      video: video_pb2.Video) -> caption_pb2.Caption | None:
    """Transcribes the video and records the caption; None when there is nothing to do or
    no word was heard."""
    language = ctx.cfg.transcoder.asr_language
    if video.status != video_pb2.VIDEO_STATUS_READY:
        log.info("automatic captions of %s skipped: it is not READY", video.id)
        return None
    if any(c.language == language for c in video.captions):
        log.info("automatic captions of %s skipped: it has a %s caption", video.id, language)
        return None
    engine = asr.make_engine(ctx.cfg.transcoder.asr_engine)
    ctx.scratch.mkdir(parents=True, exist_ok=True)
    workdir = pathlib.Path(tempfile.mkdtemp(prefix=f"{video.id}-asr-", dir=ctx.scratch))
    try:
        # The original upload while it is kept, else the top H.264 rendition (with its audio).
        source, origin = CodecUpgradeJob(ctx, request, video, [H264]).source_file(workdir)
        with step("speech to text", **{"longtail.asr_engine": engine.name, "longtail.source": origin}) as span:
            pcm = asr.speech_pcm(str(source), ctx.cfg.platform.transcode_timeout_s)
            words = engine.transcribe(pcm, language)
            span.set_attribute("longtail.words", len(words))
    except probe.MediaError as exc:
        log.warning("automatic captions of %s failed: %s", video.id, exc.reason)
        return None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    cues = asr.words_to_cues(words)
    if not cues:
        log.info("automatic captions of %s: no speech heard", video.id)
        return None
    return _record(ctx, metadata, video, language, cues, engine.name)


def _record(ctx: WorkerContext, metadata, video: video_pb2.Video, language: str, cues, engine: str):
    vtt = cues_to_vtt(cues)
    prefix = f"videos/{video.id}/captions/{language}/{uuid.uuid4().hex[:10]}/"
    files = caption_objects(vtt, video.duration_seconds)
    store_caption_files(ctx.objects, MEDIA_BUCKET, prefix, files)
    asked = caption_pb2.Caption(language=language, kind=caption_pb2.CAPTION_KIND_SUBTITLES, automatic=True,
                                object_key=prefix + "captions.vtt", playlist_object_key=prefix + "playlist.m3u8",
                                cue_count=len(cues), size_bytes=len(files["captions.vtt"]), engine=engine)
    try:
        caption = metadata.CreateCaption(mpb.CreateCaptionRequest(video_id=video.id, caption=asked), timeout=30)
    except grpc.RpcError as exc:
        for name in files:
            ctx.objects.delete(MEDIA_BUCKET, prefix + name)
        if exc.code() in (grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.NOT_FOUND):
            log.info("automatic captions of %s not recorded: %s", video.id, exc.details())
            return None
        raise
    log.info("automatic %s captions of %s: %d cues (%s)", language, video.id, len(cues), engine)
    return caption
