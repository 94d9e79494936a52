// The captions and audio-language menus, filled from hls.js's own track lists (subtitle
// renditions and audio groups of the master playlist): they appear when the manifest has
// captions or more than one audio track, and hls.js does the switching and rendering.
import Hls from "hls.js";

const CAPTIONS_PREF = "longtail:captions-lang";

// The transcoder names the upload's own audio "default": to a viewer it is the original.
function trackLabel(track, index) {
  const name = track.name === "default" ? "Original" : track.name;
  return name || track.lang || `Track ${index + 1}`;
}

function fill(select, tracks, offLabel) {
  const options = offLabel === null ? [] : [new Option(offLabel, "-1")];
  tracks.forEach((t, i) => options.push(new Option(trackLabel(t, i), String(i))));
  select.replaceChildren(...options);
}

export function preferredCaptionsLanguage() {
  try {
    return window.localStorage.getItem(CAPTIONS_PREF) || "";
  } catch {
    return "";
  }
}

function rememberCaptions(lang) {
  try {
    if (lang) window.localStorage.setItem(CAPTIONS_PREF, lang);
    else window.localStorage.removeItem(CAPTIONS_PREF);
  } catch {
    // not remembered; nothing else changes
  }
}

// Wires the menus to an Hls instance; returns toggleCaptions() for the "c" key.
export function setupTrackMenus(hls, { captions, captionsBox, audio, audioBox }, note) {
  let lastCaptions = -1;
  const syncCaptions = () => {
    captions.value = String(hls.subtitleTrack);
    if (hls.subtitleTrack >= 0) lastCaptions = hls.subtitleTrack;
  };
  hls.on(Hls.Events.SUBTITLE_TRACKS_UPDATED, () => {
    fill(captions, hls.subtitleTracks, "Off");
    captionsBox.hidden = hls.subtitleTracks.length === 0;
    syncCaptions();
  });
  hls.on(Hls.Events.SUBTITLE_TRACK_SWITCH, (_e, data) => {
    syncCaptions();
    note("captions-switched", { id: data.id });
  });
  hls.on(Hls.Events.AUDIO_TRACKS_UPDATED, () => {
    fill(audio, hls.audioTracks, null);
    audioBox.hidden = hls.audioTracks.length < 2; // one track is no choice
    audio.value = String(hls.audioTrack);
  });
  hls.on(Hls.Events.AUDIO_TRACK_SWITCHED, (_e, data) => {
    audio.value = String(data.id);
    note("audio-switched", { id: data.id });
  });
  const chooseCaptions = (id) => {
    hls.subtitleDisplay = id >= 0;
    hls.subtitleTrack = id;
    const track = hls.subtitleTracks[id];
    rememberCaptions(track ? track.lang : "");
    syncCaptions();
  };
  captions.addEventListener("change", () => chooseCaptions(Number(captions.value)));
  audio.addEventListener("change", () => {
    hls.audioTrack = Number(audio.value);
  });
  return function toggleCaptions() {
    if (!hls.subtitleTracks.length) return;
    chooseCaptions(hls.subtitleTrack >= 0 ? -1 : Math.max(0, lastCaptions));
  };
}
