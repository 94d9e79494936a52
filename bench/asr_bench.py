"""Word error rate of the automatic captions' speech engine (transcoder_svc/asr.py) on
spoken clips made with espeak-ng from known text, and on the one real speech clip of
../shared/media that has a published transcript (MDN's friday.mp4, whose WebVTT
subtitles, CC0, are the reference below).

    python bench/asr_bench.py [--engine pocketsphinx] [--out bench/results/asr.json]

WER is jiwer's, over the whole set (and per clip), after lower-casing and removing
punctuation on both sides. Needs espeak-ng (Debian package `espeak-ng`).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "gen"), str(ROOT / "bench")]

import jiwer  # noqa: E402

from machine import cpu_model  # noqa: E402
from transcoder_svc import asr  # noqa: E402

TEXTS = [
    "Captions make every video easier to follow.",
    "The quick brown fox jumps over the lazy dog.",
    "Please upload your video and we will encode it for every screen.",
    "The weather today is sunny with a light wind from the north.",
    "She sells sea shells by the sea shore on a bright summer morning.",
    "Open the settings menu and choose the language you want to hear.",
]
# espeak-ng voices: US and British English, a second US variant, at a conversational rate.
VOICES = [("en-us", 150), ("en", 150), ("en-us+m3", 140)]
# MDN interactive-examples, live-examples/media/examples/friday.vtt (CC0), cue texts joined.
FRIDAY_REFERENCE = ("Hildy! How are you? Tell me, is the lord of the universe in? Yes, he's in - in a bad humor "
                    "Somebody must've stolen the crown jewels")
FRIDAY = ROOT.parent / "shared" / "media" / "friday_480p_h264_aac.mp4"
NORMALISE = jiwer.Compose([jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.RemoveMultipleSpaces(),
                           jiwer.Strip(), jiwer.ReduceToListOfListOfWords()])


def espeak_clip(text: str, voice: str, rate: int, path: Path) -> None:
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-w", str(path), text], check=True,
                   capture_output=True)


def transcribe(engine, source: Path) -> tuple[str, float, float]:
    """(hypothesis, audio seconds, decode seconds)."""
    pcm = asr.speech_pcm(str(source), timeout_s=600)
    started = time.perf_counter()
    words = engine.transcribe(pcm, "en")
    return " ".join(w for w, _, _ in words), len(pcm) / 2 / asr.SAMPLE_RATE, time.perf_counter() - started


def wer(reference: str, hypothesis: str) -> float:
    return jiwer.wer(reference, hypothesis or "<empty>", reference_transform=NORMALISE,
                     hypothesis_transform=NORMALISE)


def run(engine_name: str) -> dict:
    engine = asr.make_engine(engine_name)
    load_before = os.getloadavg()[0]
    clips = []
    with tempfile.TemporaryDirectory(prefix="asr-bench-") as tmp:
        for voice, rate in VOICES:
            for i, text in enumerate(TEXTS):
                wav = Path(tmp) / f"{voice}-{i}.wav"
                espeak_clip(text, voice, rate, wav)
                clips.append({"set": "espeak-ng", "voice": voice, "rate_wpm": rate, "reference": text,
                              **_measure(engine, wav, text)})
    if FRIDAY.exists():
        clips.append({"set": "real speech", "clip": FRIDAY.name, "reference": FRIDAY_REFERENCE,
                      **_measure(engine, FRIDAY, FRIDAY_REFERENCE)})
    return {"engine": engine.name,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
            "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                        "load_1m": [round(load_before, 1), round(os.getloadavg()[0], 1)]},
            "espeak_ng": shutil.which("espeak-ng") and subprocess.run(
                ["espeak-ng", "--version"], capture_output=True, text=True).stdout.strip(),
            "summary": _summary(clips), "clips": clips}


def _measure(engine, source: Path, reference: str) -> dict:
    hypothesis, audio_s, decode_s = transcribe(engine, source)
    return {"hypothesis": hypothesis, "wer": round(wer(reference, hypothesis), 3), "audio_s": round(audio_s, 2),
            "decode_s": round(decode_s, 2), "real_time_factor": round(decode_s / audio_s, 2) if audio_s else None}


def _summary(clips: list[dict]) -> dict:
    out = {}
    for name in sorted({c["set"] for c in clips}):
        chosen = [c for c in clips if c["set"] == name]
        out[name] = {"clips": len(chosen),
                     "wer": round(wer([c["reference"] for c in chosen],
                                      [c["hypothesis"] or "<empty>" for c in chosen]), 3),
                     "real_time_factor": round(sum(c["decode_s"] for c in chosen) / sum(c["audio_s"] for c in chosen),
                                               2)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="pocketsphinx")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "asr.json"))
    args = parser.parse_args()
    result = run(args.engine)
    Path(args.out).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
