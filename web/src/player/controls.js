// The control bar under the picture: play/pause, a seek bar (chapter marks, storyboard
// preview on hover), time, mute and volume, speed, fullscreen, and the keyboard shortcuts
// people know from other players. Playback itself stays with the <video> element (and the
// hls.js instance feeding it); this only drives it.
import { formatTime } from "./format.js";

export const SPEEDS = [0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2];
const SPEED_PREF = "longtail:speed";
const JUMP_S = 10; // j / l
const STEP_S = 5; // arrow keys
const VOLUME_STEP = 0.1;

function storedSpeed() {
  try {
    const v = Number(window.localStorage.getItem(SPEED_PREF));
    return SPEEDS.includes(v) ? v : 1;
  } catch {
    return 1;
  }
}

function rememberSpeed(rate) {
  try {
    window.localStorage.setItem(SPEED_PREF, String(rate));
  } catch {
    // not remembered
  }
}

// Icons drawn here (no icon font: a system without emoji fonts would show boxes).
const SPEAKER = '<path d="M3 9v6h4l5 5V4L7 9z" fill="currentColor"/>';
const ICONS = {
  play: '<path d="M8 5v14l11-7z" fill="currentColor"/>',
  pause: '<path d="M6 5h4v14H6zM14 5h4v14h-4z" fill="currentColor"/>',
  volume: `${SPEAKER}<path d="M15.5 9a4 4 0 0 1 0 6M18 6.5a8 8 0 0 1 0 11" fill="none" stroke="currentColor" stroke-width="2"/>`,
  muted: `${SPEAKER}<path d="M16 9l6 6M22 9l-6 6" fill="none" stroke="currentColor" stroke-width="2"/>`,
  fullscreen: '<path d="M4 9V4h5M15 4h5v5M20 15v5h-5M9 20H4v-5" fill="none" stroke="currentColor" stroke-width="2"/>',
  exitFullscreen: '<path d="M9 4v5H4M20 9h-5V4M15 20v-5h5M4 15h5v5" fill="none" stroke="currentColor" stroke-width="2"/>',
};

function setLabel(button, text, icon) {
  if (button.getAttribute("aria-label") === text && button.dataset.icon === icon) return;
  button.setAttribute("aria-label", text);
  button.title = text;
  button.dataset.icon = icon;
  button.innerHTML = `<svg viewBox="0 0 24 24" width="20" height="20" aria-hidden="true" focusable="false">${ICONS[icon]}</svg>`;
}

export class Controls {
  constructor(video, frame, els, hooks) {
    this.video = video;
    this.frame = frame;
    this.els = els; // {playPause, seek, time, mute, volume, speed, fullscreen}
    this.hooks = hooks; // {canControl(), start(), toggleCaptions(), onSeekDisplay(t)}
    this.dragging = false;
    this.duration = 0;
  }

  init(durationS) {
    this.duration = durationS;
    const { speed } = this.els;
    speed.replaceChildren(...SPEEDS.map((s) => new Option(s === 1 ? "Normal" : `${s}×`, String(s))));
    this.setSpeed(storedSpeed());
    this.wireButtons();
    this.wireSeek();
    this.wireVideo();
    document.addEventListener("keydown", (e) => this.onKey(e));
    this.render();
  }

  get total() {
    return Number.isFinite(this.video.duration) && this.video.duration > 0 ? this.video.duration : this.duration;
  }

  togglePlay() {
    if (!this.hooks.canControl()) return this.hooks.start();
    if (this.video.paused || this.video.ended) this.video.play().catch(() => {});
    else this.video.pause();
  }

  seekTo(t) {
    if (!this.hooks.canControl()) return this.render(); // before the start or during an ad: the bar snaps back
    const end = this.total;
    this.video.currentTime = Math.max(0, end ? Math.min(t, end - 0.1) : t);
    this.render();
  }

  setSpeed(rate) {
    this.video.playbackRate = rate;
    this.video.defaultPlaybackRate = rate; // survives a source change
    this.els.speed.value = String(rate);
  }

  stepSpeed(direction) {
    const at = SPEEDS.indexOf(this.video.playbackRate);
    const next = SPEEDS[Math.min(SPEEDS.length - 1, Math.max(0, (at < 0 ? 3 : at) + direction))];
    this.setSpeed(next);
    rememberSpeed(next);
  }

  toggleFullscreen() {
    if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
    else if (this.frame.requestFullscreen) this.frame.requestFullscreen().catch(() => {});
  }

  setVolume(v) {
    this.video.volume = Math.min(1, Math.max(0, v));
    this.video.muted = this.video.volume === 0;
    this.render(); // now, not at the volumechange event that follows
  }

  toggleMute() {
    this.video.muted = !this.video.muted;
    this.render();
  }

  wireButtons() {
    const { playPause, mute, volume, speed, fullscreen } = this.els;
    playPause.addEventListener("click", () => this.togglePlay());
    mute.addEventListener("click", () => this.toggleMute());
    volume.addEventListener("input", () => this.setVolume(Number(volume.value)));
    speed.addEventListener("change", () => {
      this.setSpeed(Number(speed.value));
      rememberSpeed(Number(speed.value));
    });
    fullscreen.addEventListener("click", () => this.toggleFullscreen());
    document.addEventListener("fullscreenchange", () => this.render());
    this.video.addEventListener("click", () => this.togglePlay());
    this.video.addEventListener("dblclick", () => this.toggleFullscreen());
  }

  wireSeek() {
    const { seek } = this.els;
    seek.addEventListener("pointerdown", () => {
      this.dragging = true;
    });
    const release = () => {
      this.dragging = false;
    };
    seek.addEventListener("pointerup", release);
    seek.addEventListener("pointercancel", release);
    seek.addEventListener("input", () => {
      this.seekTo(Number(seek.value));
      this.hooks.onSeekDisplay(Number(seek.value));
    });
    seek.addEventListener("keydown", (e) => {
      // The bar's own arrow steps would be tiny: the player's shortcuts take them.
      if (e.key.startsWith("Arrow")) e.preventDefault();
    });
  }

  wireVideo() {
    for (const event of ["timeupdate", "durationchange", "play", "pause", "ended", "volumechange", "seeking"]) {
      this.video.addEventListener(event, () => this.render());
    }
    this.video.addEventListener("ratechange", () => {
      this.els.speed.value = String(this.video.playbackRate);
    });
  }

  render() {
    const { playPause, seek, time, mute, volume, fullscreen } = this.els;
    const t = this.video.currentTime || 0;
    const total = this.total;
    const playing = !this.video.paused && !this.video.ended;
    setLabel(playPause, playing ? "Pause (k)" : "Play (k)", playing ? "pause" : "play");
    const muted = this.video.muted || this.video.volume === 0;
    setLabel(mute, muted ? "Unmute (m)" : "Mute (m)", muted ? "muted" : "volume");
    volume.value = String(muted ? 0 : this.video.volume);
    const full = Boolean(document.fullscreenElement);
    setLabel(fullscreen, full ? "Exit full screen (f)" : "Full screen (f)", full ? "exitFullscreen" : "fullscreen");
    seek.max = String(total || 0);
    if (!this.dragging) seek.value = String(t);
    seek.setAttribute("aria-valuetext", `${formatTime(t)} of ${formatTime(total)}`);
    seek.style.setProperty("--played", `${total ? (100 * t) / total : 0}%`);
    time.textContent = `${formatTime(t)} / ${formatTime(total)}`;
  }

  // Shortcuts act on the player from anywhere on the page but a text field or a menu; a
  // focused button keeps Space and Enter for itself.
  onKey(e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const target = e.target;
    const tag = target && target.tagName;
    if (tag === "TEXTAREA" || tag === "SELECT" || (target && target.isContentEditable)) return;
    if (tag === "INPUT" && target.type !== "range") return;
    if (tag === "BUTTON" && (e.key === " " || e.key === "Enter")) return;
    const action = this.action(e.key);
    if (!action) return;
    e.preventDefault();
    action();
  }

  action(key) {
    const v = this.video;
    const actions = {
      " ": () => this.togglePlay(),
      k: () => this.togglePlay(),
      j: () => this.seekTo(v.currentTime - JUMP_S),
      l: () => this.seekTo(v.currentTime + JUMP_S),
      ArrowLeft: () => this.seekTo(v.currentTime - STEP_S),
      ArrowRight: () => this.seekTo(v.currentTime + STEP_S),
      ArrowUp: () => this.setVolume(v.volume + VOLUME_STEP),
      ArrowDown: () => this.setVolume(v.volume - VOLUME_STEP),
      Home: () => this.seekTo(0),
      End: () => this.seekTo(this.total),
      f: () => this.toggleFullscreen(),
      m: () => this.toggleMute(),
      c: () => this.hooks.toggleCaptions(),
      ">": () => this.stepSpeed(1),
      "<": () => this.stepSpeed(-1),
    };
    const key1 = key.length === 1 ? key.toLowerCase() : key;
    if (/^[0-9]$/.test(key1)) return () => this.seekTo((this.total * Number(key1)) / 10);
    return actions[key1] || null;
  }
}
