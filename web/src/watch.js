// The watch page: loads the watch payload, plays the pre-roll (and any mid/post-roll) ad,
// then the adaptive stream with hls.js (native HLS where hls.js cannot run, e.g. iOS),
// with the player's controls (player/controls.js: seek bar with storyboard previews and
// chapter marks, speed, captions and audio menus from hls.js's tracks, quality, fullscreen,
// keyboard shortcuts), resumes where the viewer left off, shows the views count and more
// from the channel, and sends view beacons with the bytes fetched for playback and the quality of
// experience it measured (start-up time, rebuffering, ladder position).
// Stream URLs are signed and expire: the page fetches a fresh watch payload before they
// do, and every later request (playlists, segments, beacons) uses the fresh signature.
import Hls from "hls.js";
import { $, errorMessage, getJson, setStatus, sleep } from "./util.js";
import { chapterAt, highlightChapter, parseChapters, renderChapters } from "./player/chapters.js";
import { showMoreFromChannel, showViews } from "./player/channel.js";
import { Controls } from "./player/controls.js";
import { formatTime } from "./player/format.js";
import { savedPosition, trackPosition } from "./player/resume.js";
import { loadStoryboard, showPreview } from "./player/storyboard.js";
import { preferredCaptionsLanguage, setupTrackMenus } from "./player/tracks.js";

// The gateway's built-in house ad, used when an ad break has no creative of its own.
const HOUSE_AD_URL = "/ads/house-preroll.mp4";
const PROGRESS_EVERY_S = 10;
// Refresh the payload when this share of its signatures' lifetime has passed.
const REFRESH_AT = 0.75;
const REFRESH_RETRY_S = 15;
const SKIPPABLE_AFTER_S = 5;

const root = $("#watch");
const videoId = root.dataset.videoId;
const content = $("#content");
const adVideo = $("#ad");
const startButton = $("#start");
const quality = $("#quality");
const levelNow = $("#level-now");
const statusEl = $("#status");
const adBadge = $("#ad-badge");
const adRemaining = $("#ad-remaining");
const skipButton = $("#skip-ad");
const frame = $("#player-frame");
const seekArea = $("#seek-area");
const chapterNow = $("#chapter-now");
const chapterEls = { list: $("#chapters"), marks: $("#chapter-marks"), section: $("#chapters-section") };
const previewEls = { box: $("#preview"), image: $("#preview-image"), time: $("#preview-time"), chapter: $("#preview-chapter") };
const trackEls = { captions: $("#captions"), captionsBox: $("#captions-box"), audio: $("#audio"), audioBox: $("#audio-box") };
const resumeNotice = $("#resume-notice");

// A timeline of what the player did, readable from the console (and by the browser tests).
const state = {
  log: [], beacons: [], bytesLoaded: 0, bytesReported: 0, hls: null, phase: "loading", payload: null,
  chapters: [], storyboardCues: [], resumedFrom: null, more: [], toggleCaptions: () => {}, controls: null,
  qoe: { playRequestedAt: null, adMs: 0, startupMs: 0, stalledAt: null, rebuffers: 0, rebufferMs: 0,
    rebuffersReported: 0, rebufferMsReported: 0, ladderPosition: 0 },
};
window.longtailPlayer = state;

function note(event, detail = {}) {
  state.log.push({ event, t: Math.round(performance.now()), ...detail });
}

function setPhase(phase) {
  state.phase = phase;
  root.dataset.phase = phase;
  note("phase", { phase });
}

function watchUrl(region) {
  const query = region ? `?region=${encodeURIComponent(region)}` : "";
  return `/v1/videos/${encodeURIComponent(videoId)}/watch${query}`;
}

async function loadPayload() {
  for (;;) {
    const { status, body } = await getJson(watchUrl(""));
    if (status === 200) return body;
    const videoStatus = body && body.error && body.error.status;
    if (status === 409 && (videoStatus === "UPLOADING" || videoStatus === "PROCESSING")) {
      setStatus(statusEl, `This video is ${videoStatus.toLowerCase()}; it will start here when it is ready.`);
      await sleep(3000);
      continue;
    }
    throw new Error(errorMessage(body, `could not load the video (HTTP ${status})`));
  }
}

function thumbnail(payload, kind) {
  return (payload.thumbnails || []).find((t) => t.kind === kind);
}

function showDetails(payload) {
  $("#title").textContent = payload.title;
  document.title = `${payload.title} · Longtail`;
  const channel = $("#channel");
  channel.textContent = payload.channel.name || payload.channel.id;
  channel.hidden = false;
  $("#description").textContent = payload.description;
  const poster = thumbnail(payload, "poster");
  if (poster) content.poster = poster.url;
  showViews(videoId, $("#views"));
  showMoreFromChannel(videoId, payload.channel.id, { section: $("#more-section"), list: $("#more") })
    .then((ids) => {
      state.more = ids;
      note("more-from-channel", { ids });
    });
}

// -- signatures -------------------------------------------------------------------------

// A signed stream URL is <base>/videos/<id>/<file>: the base (origin or edge, with the
// token) is what a refresh replaces; the object keys after it stay the same.
function streamBase(url) {
  const at = url.indexOf(`/videos/${videoId}/`);
  return at < 0 ? "" : url.slice(0, at);
}

// Requests hls.js makes from URLs it resolved earlier go to the freshest base.
function rebased(url) {
  const base = streamBase(url);
  const fresh = state.payload ? streamBase(state.payload.stream.url) : "";
  return base && fresh && base !== fresh ? fresh + url.slice(base.length) : url;
}

function refreshDelayS(payload) {
  const lifetimes = [payload.stream.expires_in_s, payload.playback && payload.playback.expires_in_s]
    .filter((s) => typeof s === "number");
  return lifetimes.length ? Math.max(1, Math.min(...lifetimes) * REFRESH_AT) : null;
}

// Fetches a fresh payload (same region) before the current one's signatures expire.
function scheduleRefresh(delayS) {
  if (delayS === null) return;
  setTimeout(async () => {
    let next = REFRESH_RETRY_S;
    try {
      const { status, body } = await getJson(watchUrl(state.payload.stream.region));
      if (status === 200) {
        const wasNative = !state.hls && content.src;
        state.payload = body;
        note("payload-refreshed", { base: streamBase(body.stream.url), expires_in_s: body.stream.expires_in_s });
        if (wasNative) swapNativeSource(body.stream.url);
        next = refreshDelayS(body);
      }
    } catch (err) {
      note("payload-refresh-failed", { message: String(err) });
    }
    scheduleRefresh(next);
  }, delayS * 1000);
}

// Native HLS players cannot rewrite their requests: they get the fresh URL where they are.
function swapNativeSource(url) {
  const at = content.currentTime;
  const playing = !content.paused;
  content.src = url;
  content.addEventListener("loadedmetadata", () => {
    content.currentTime = at;
    if (playing) content.play().catch(() => {});
  }, { once: true });
}

// -- the stream ------------------------------------------------------------------------

function levelLabel(level) {
  return `${level.height}p · ${Math.round(level.bitrate / 1000)} kb/s`;
}

function fillQuality(levels) {
  quality.replaceChildren(new Option("Auto", "-1", true, true));
  levels
    .map((level, index) => ({ level, index }))
    .sort((a, b) => b.level.height - a.level.height)
    .forEach(({ level, index }) => quality.append(new Option(levelLabel(level), String(index))));
  quality.disabled = false;
}

// Position of a level in the bitrate ladder, 1 = lowest (hls.js keeps levels in its own order).
function ladderPosition(levels, index) {
  const level = levels[index];
  return level ? levels.filter((l) => l.bitrate < level.bitrate).length + 1 : 0;
}

function setupStream(payload) {
  const url = payload.stream.url;
  if (Hls.isSupported()) {
    // Nothing is fetched until the viewer presses play; then the stream buffers while the
    // pre-roll runs, so the content starts without a wait.
    const captionsLang = preferredCaptionsLanguage();
    const hls = new Hls({
      autoStartLoad: false,
      // The viewer's last captions language, chosen by hls.js when the stream has it.
      ...(captionsLang ? { subtitlePreference: { lang: captionsLang } } : {}),
      // Signed URLs expire: a request resolved from an older payload goes out with the newest signature.
      xhrSetup: (xhr, requested) => {
        const fresh = rebased(requested);
        if (fresh !== requested) xhr.open("GET", fresh, true);
      },
    });
    state.hls = hls;
    state.toggleCaptions = setupTrackMenus(hls, trackEls, note);
    hls.on(Hls.Events.MANIFEST_PARSED, () => fillQuality(hls.levels));
    hls.on(Hls.Events.LEVEL_SWITCHED, (_e, data) => {
      const level = hls.levels[data.level];
      levelNow.textContent = level ? `Playing ${level.height}p` : "";
      state.qoe.ladderPosition = ladderPosition(hls.levels, data.level);
      note("level-switched", { level: data.level, height: level && level.height });
    });
    hls.on(Hls.Events.FRAG_LOADED, (_e, data) => {
      const stats = data.frag.stats;
      state.bytesLoaded += stats.total || stats.loaded || 0;
    });
    let recoveries = 0;
    hls.on(Hls.Events.ERROR, (_e, data) => {
      note("hls-error", { type: data.type, details: data.details, fatal: data.fatal });
      if (!data.fatal) return;
      if (recoveries++ < 2 && data.type === Hls.ErrorTypes.MEDIA_ERROR) {
        hls.recoverMediaError();
      } else if (recoveries <= 2 && data.type === Hls.ErrorTypes.NETWORK_ERROR) {
        hls.startLoad();
      } else {
        setStatus(statusEl, `Playback failed (${data.details}).`, "error");
        setPhase("error");
      }
    });
    hls.loadSource(url);
    hls.attachMedia(content);
  } else if (content.canPlayType("application/vnd.apple.mpegurl")) {
    content.src = url; // Safari / iOS play HLS natively and choose the quality themselves
    quality.replaceChildren(new Option("Auto", "-1", true, true));
  } else {
    throw new Error("This browser cannot play HLS streams.");
  }
}

quality.addEventListener("change", () => {
  const level = Number(quality.value);
  if (!state.hls) return;
  // currentLevel switches at once (flushing what is buffered); -1 goes back to automatic.
  state.hls.currentLevel = level;
  note("quality-chosen", { level });
});

// -- ads -------------------------------------------------------------------------------

function playAd(ad) {
  return new Promise((resolve) => {
    let finished = false;
    let skipTimer = 0;
    const limit = (ad.duration_seconds || 30) + 10; // a stalled ad never blocks the content
    const guard = setTimeout(() => finish("timeout"), limit * 1000);
    function finish(how) {
      if (finished) return;
      finished = true;
      clearTimeout(guard);
      clearTimeout(skipTimer);
      adVideo.removeEventListener("ended", onEnded);
      adVideo.removeEventListener("error", onError);
      adVideo.removeEventListener("timeupdate", onTime);
      skipButton.removeEventListener("click", onSkip);
      adVideo.pause();
      adVideo.hidden = true;
      adBadge.hidden = true;
      skipButton.hidden = true;
      note("ad-end", { ad_id: ad.ad_id, how, played_s: adVideo.currentTime });
      resolve();
    }
    const onEnded = () => finish("ended");
    const onError = () => finish("error");
    const onSkip = () => finish("skipped");
    const onTime = () => {
      const total = adVideo.duration || ad.duration_seconds || 0;
      adRemaining.textContent = `${Math.max(0, Math.ceil(total - adVideo.currentTime))} s`;
    };
    adVideo.addEventListener("ended", onEnded);
    adVideo.addEventListener("error", onError);
    adVideo.addEventListener("timeupdate", onTime);
    skipButton.addEventListener("click", onSkip);
    if ((ad.duration_seconds || 0) > SKIPPABLE_AFTER_S) {
      skipTimer = setTimeout(() => {
        skipButton.hidden = false;
      }, SKIPPABLE_AFTER_S * 1000);
    }
    setPhase("ad");
    note("ad-start", { ad_id: ad.ad_id, position: ad.position });
    adRemaining.textContent = ad.duration_seconds ? `${Math.ceil(ad.duration_seconds)} s` : "";
    adBadge.hidden = false;
    adVideo.hidden = false;
    adVideo.src = ad.creative_url || HOUSE_AD_URL;
    adVideo.play().catch((err) => {
      note("ad-play-rejected", { message: String(err) });
      finish("rejected");
    });
  });
}

async function playBreaks(breaks) {
  const wasPlaying = !content.paused;
  content.pause();
  const adStart = performance.now();
  for (const ad of breaks) await playAd(ad);
  state.qoe.adMs += performance.now() - adStart;
  setPhase("content");
  return wasPlaying;
}

// -- beacons ---------------------------------------------------------------------------

function beacon(kind) {
  // The views API takes the bytes fetched since the previous beacon of this playback.
  const bytes = Math.round(state.bytesLoaded - state.bytesReported);
  state.bytesReported += bytes;
  const record = { kind, bytes, status: null };
  state.beacons.push(record);
  const payload = state.payload;
  const q = state.qoe;
  const rebuffers = q.rebuffers - q.rebuffersReported;
  const rebufferMs = Math.round(q.rebufferMs - q.rebufferMsReported);
  q.rebuffersReported += rebuffers;
  q.rebufferMsReported += rebufferMs;
  const body = JSON.stringify({
    kind,
    bytes,
    region: payload ? payload.stream.region : "",
    playback_id: payload && payload.playback ? payload.playback.id : "",
    startup_ms: kind === "start" ? Math.round(q.startupMs) : 0,
    rebuffer_count: rebuffers,
    rebuffer_ms: rebufferMs,
    ladder_position: q.ladderPosition,
    served_from: payload ? payload.stream.served_from : "",
  });
  // keepalive lets the last beacon out as the page closes; a missing endpoint is fine.
  fetch(`/v1/videos/${encodeURIComponent(videoId)}/views`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body,
    keepalive: true,
  })
    .then((resp) => {
      record.status = resp.status;
    })
    .catch(() => {
      record.status = 0;
    });
}

function watchBeacons() {
  let started = false;
  let completed = false;
  let watched = 0;
  let sinceProgress = 0;
  let last = 0;
  const q = state.qoe;
  content.addEventListener("playing", () => {
    if (q.stalledAt !== null) {
      q.rebufferMs += performance.now() - q.stalledAt;
      q.stalledAt = null;
    }
    if (!started) {
      started = true;
      // Mux's video start-up time: play request to first frame (less the pre-roll's play time).
      if (q.playRequestedAt !== null) q.startupMs = Math.max(0, performance.now() - q.playRequestedAt - q.adMs);
      note("content-playing", { currentTime: content.currentTime, startup_ms: Math.round(q.startupMs) });
      beacon("start");
    }
  });
  // Rebuffering (Mux): a stall after the first frame that a seek did not cause.
  content.addEventListener("waiting", () => {
    if (!started || content.seeking || q.stalledAt !== null || state.phase !== "content") return;
    q.stalledAt = performance.now();
    q.rebuffers += 1;
    note("rebuffer-start", { currentTime: content.currentTime });
  });
  content.addEventListener("timeupdate", () => {
    const delta = content.currentTime - last;
    last = content.currentTime;
    if (content.paused || delta <= 0 || delta > 2) return; // seeks are not watching
    watched += delta;
    sinceProgress += delta;
    if (sinceProgress >= PROGRESS_EVERY_S) {
      sinceProgress = 0;
      beacon("progress");
    }
  });
  content.addEventListener("ended", () => {
    if (!completed) {
      completed = true;
      beacon("complete");
    }
  });
  window.addEventListener("pagehide", () => {
    if (started && !completed && watched > 0) beacon("progress");
  });
}

// -- start -----------------------------------------------------------------------------

async function main() {
  content.addEventListener("error", () => {
    const code = content.error ? content.error.code : 0;
    note("content-error", { code });
    setStatus(statusEl, `The video could not be played (media error ${code}).`, "error");
  });
  let payload;
  try {
    payload = await loadPayload();
  } catch (err) {
    setStatus(statusEl, err.message, "error");
    setPhase("error");
    return;
  }
  state.payload = payload;
  scheduleRefresh(refreshDelayS(payload));
  setStatus(statusEl, "");
  showDetails(payload);
  try {
    setupStream(payload);
  } catch (err) {
    setStatus(statusEl, err.message, "error");
    setPhase("error");
    return;
  }
  watchBeacons();
  const breaks = payload.ad_breaks || [];
  const midRolls = breaks.filter((b) => b.position === "mid_roll").sort((a, b) => a.offset_seconds - b.offset_seconds);
  const postRolls = breaks.filter((b) => b.position === "post_roll");

  content.addEventListener("timeupdate", async () => {
    if (state.phase !== "content" || !midRolls.length || content.currentTime < midRolls[0].offset_seconds) return;
    const due = [];
    while (midRolls.length && content.currentTime >= midRolls[0].offset_seconds) due.push(midRolls.shift());
    if (await playBreaks(due)) content.play();
  });
  content.addEventListener("ended", async () => {
    if (postRolls.length && state.phase === "content") await playBreaks(postRolls.splice(0));
    setPhase("ended");
  });

  setupPlayerUi(payload);
  startButton.disabled = false;
  setPhase("ready");
  startButton.addEventListener("click", () => startPlayback(breaks.filter((b) => b.position === "pre_roll")));
}

async function startPlayback(preRolls) {
  if (state.phase !== "ready") return;
  startButton.hidden = true;
  state.qoe.playRequestedAt = performance.now();
  // Phones (and stricter autoplay policies) let an element play only after a play() made
  // during the viewer's gesture: unlock the content element now so it can start after the ad.
  const unlock = content.play();
  if (unlock) unlock.catch(() => {});
  content.pause();
  const resumeAt = savedPosition(videoId, state.payload.duration_seconds);
  if (resumeAt !== null) {
    state.resumedFrom = resumeAt;
    note("resume", { at: resumeAt });
  }
  // hls.js starts loading at the resume position and puts the element there itself.
  if (state.hls) state.hls.startLoad(resumeAt === null ? -1 : resumeAt);
  else if (resumeAt !== null) seekWhenLoaded(resumeAt);
  await playBreaks(preRolls);
  content.hidden = false;
  content.focus();
  if (resumeAt !== null) showResumeNotice(resumeAt);
  try {
    await content.play();
  } catch (err) {
    note("play-rejected", { message: String(err) });
    setStatus(statusEl, "Press play to start the video.");
  }
}

function seekWhenLoaded(t) {
  if (content.readyState >= 1) content.currentTime = t;
  else content.addEventListener("loadedmetadata", () => { content.currentTime = t; }, { once: true });
}

function showResumeNotice(t) {
  $("#resume-at").textContent = formatTime(t);
  resumeNotice.hidden = false;
  setTimeout(() => { resumeNotice.hidden = true; }, 8000);
}

// -- the player's controls, chapters, storyboard ------------------------------------------

function setupPlayerUi(payload) {
  const durationS = payload.duration_seconds || 0;
  const canControl = () => state.phase === "content" || state.phase === "ended";
  const controls = new Controls(content, frame, {
    playPause: $("#play-pause"), seek: $("#seek"), time: $("#time"), mute: $("#mute"), volume: $("#volume"),
    speed: $("#speed"), fullscreen: $("#fullscreen"),
  }, {
    canControl,
    start: () => startButton.click(),
    toggleCaptions: () => state.toggleCaptions(),
    onSeekDisplay: (t) => previewAt(t, durationS ? t / durationS : 0),
  });
  state.controls = controls;
  controls.init(durationS);
  const seek = (t) => {
    controls.seekTo(t);
    note("seek", { to: t });
  };
  state.chapters = parseChapters(payload.description, durationS);
  renderChapters(state.chapters, durationS, chapterEls, seek);
  const showChapter = () => {
    const current = highlightChapter(state.chapters, content.currentTime, chapterEls.list);
    chapterNow.textContent = current ? current.title : "";
  };
  for (const event of ["timeupdate", "seeking", "seeked"]) content.addEventListener(event, showChapter);
  $("#start-over").addEventListener("click", () => {
    resumeNotice.hidden = true;
    seek(0);
  });
  trackPosition(content, videoId, durationS, canControl);
  setupPreview(payload, durationS);
}

function previewAt(t, fraction) {
  const sprite = state.payload && thumbnail(state.payload, "storyboard");
  const chapter = chapterAt(state.chapters, t);
  showPreview(previewEls, sprite ? sprite.url : "", state.storyboardCues, t, fraction, chapter && chapter.title);
}

function setupPreview(payload, durationS) {
  const vtt = thumbnail(payload, "storyboard_vtt");
  loadStoryboard(content, vtt && vtt.url).then((cues) => {
    state.storyboardCues = cues;
    note("storyboard", { cues: cues.length });
  });
  seekArea.addEventListener("pointermove", (e) => {
    const rect = seekArea.getBoundingClientRect();
    const fraction = Math.min(1, Math.max(0, (e.clientX - rect.left) / rect.width));
    const total = content.duration || durationS;
    if (total > 0) previewAt(fraction * total, fraction);
  });
  seekArea.addEventListener("pointerleave", () => {
    previewEls.box.hidden = true;
  });
  $("#seek").addEventListener("blur", () => {
    previewEls.box.hidden = true;
  });
}

main();
