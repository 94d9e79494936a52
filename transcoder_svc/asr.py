"""Speech to text for automatic captions, behind one small interface (`SpeechEngine`) so a
stronger engine can be configured where its weights are at hand.

The default engine is PocketSphinx: its wheel carries an English acoustic model,
dictionary and language model, so nothing is downloaded at run time (its accuracy is far
below Whisper's: BENCHMARKS.md, "Automatic captions"). `transcoder.asr_engine` names the
engine: "pocketsphinx", or "package.module:Class" for any class with the same `name` and
`transcribe` (e.g. a faster-whisper wrapper on a machine that has the model).
"""
from __future__ import annotations

import importlib
import io
from typing import Protocol

import ffmpeg

from longtail_common.captions import Cue
from transcoder_svc import ffmpeg_graphs

SAMPLE_RATE = 16000
# How spoken words are cut into cues: a pause this long, this many words or seconds.
CUE_PAUSE_S = 0.6
CUE_MAX_WORDS = 8
CUE_MAX_S = 4.0


class SpeechEngine(Protocol):
    name: str

    def transcribe(self, pcm: bytes, language: str) -> list[tuple[str, float, float]]:
        """Words heard in 16 kHz mono signed 16-bit PCM, as (word, start s, end s)."""


class PocketSphinxEngine:
    """CMU PocketSphinx with the US English model its wheel ships (English only)."""

    name = "pocketsphinx"
    LANGUAGES = ("en",)
    _FILLERS = {"<s>", "</s>", "<sil>", "[NOISE]", "[BREATH]", "[COUGH]", "[UH]", "[UM]", "[SMACK]"}

    def transcribe(self, pcm: bytes, language: str) -> list[tuple[str, float, float]]:
        from pocketsphinx import Decoder, Segmenter

        if language.split("-")[0] not in self.LANGUAGES:
            raise ValueError(f"pocketsphinx has no {language} model")
        decoder = Decoder(samprate=SAMPLE_RATE)
        frame_s = 1 / int(decoder.config["frate"])
        words = []
        # One utterance per stretch of speech the voice activity detector finds: shorter
        # searches, and the timings of each start where its speech does.
        for speech in Segmenter(sample_rate=SAMPLE_RATE).segment(io.BytesIO(pcm)):
            decoder.start_utt()
            decoder.process_raw(speech.pcm, full_utt=True)
            decoder.end_utt()
            for seg in decoder.seg():
                word = seg.word.split("(")[0]  # "read(2)": an alternative pronunciation
                # Fillers and noise: "<sil>", "[NOISE]", "[SPEECH]", "++garbage++".
                if word not in self._FILLERS and not word.startswith(("++", "[", "<")):
                    words.append((word, speech.start_time + seg.start_frame * frame_s,
                                  speech.start_time + (seg.end_frame + 1) * frame_s))
        return words


ENGINES = {"pocketsphinx": PocketSphinxEngine}


def make_engine(name: str) -> SpeechEngine:
    """The configured engine: a known name, or "module:Class" (ValueError otherwise)."""
    if name in ENGINES:
        return ENGINES[name]()
    if ":" in name:
        module, _, cls = name.partition(":")
        return getattr(importlib.import_module(module), cls)()
    raise ValueError(f"transcoder.asr_engine: {name!r} is neither one of {sorted(ENGINES)} nor module:Class")


def speech_pcm(source: str, timeout_s: float) -> bytes:
    """The source's first audio track as 16 kHz mono PCM (ffmpeg), what engines take."""
    out = ffmpeg.input(source).audio.output("pipe:", format="s16le", ac=1, ar=SAMPLE_RATE)
    args = ffmpeg_graphs.command(out)
    return ffmpeg_graphs.run_capture(args, timeout_s, "extracting the speech")


def words_to_cues(words: list[tuple[str, float, float]]) -> list[Cue]:
    """Words grouped into caption cues: a new cue after a pause, or when one is full."""
    cues: list[Cue] = []
    current: list[tuple[str, float, float]] = []
    for word in words:
        if current and (word[1] - current[-1][2] > CUE_PAUSE_S or len(current) >= CUE_MAX_WORDS
                        or word[2] - current[0][1] > CUE_MAX_S):
            cues.append(Cue(current[0][1], current[-1][2], " ".join(w for w, _, _ in current)))
            current = []
        current.append(word)
    if current:
        cues.append(Cue(current[0][1], current[-1][2], " ".join(w for w, _, _ in current)))
    return cues
