// The upload page: a resumable tus upload (tus-js-client) to the gateway, with progress,
// pause/resume, and resumption of an interrupted upload of the same file after a reload;
// then it follows the video through PROCESSING and links to the watch page when READY.
import * as tus from "tus-js-client";
import { $, errorMessage, getJson, setStatus, sleep } from "./util.js";

const CHUNK_BYTES = 4 * 1024 * 1024; // each chunk is committed server-side: a resume loses at most one
// The gateway refuses a state-changing call on a session without the page's CSRF token.
const CSRF_TOKEN = document.querySelector('meta[name="csrf-token"]')?.content || "";

const form = $("#upload-form");
const submit = $("#upload-submit");
const pauseButton = $("#upload-pause");
const progress = $("#upload-progress");
const progressArea = $("#progress-area");
const progressText = $("#progress-text");
const statusEl = $("#status");
const watchArea = $("#watch-link-area");
const watchLink = $("#watch-link");
const channelInput = form.elements.channel_id;

const state = { upload: null, videoId: null, phase: "idle" };
window.longtailUpload = state;

function setPhase(phase) {
  state.phase = phase;
  document.body.dataset.uploadPhase = phase;
}

function formatBytes(n) {
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

async function followProcessing(videoId) {
  setPhase("processing");
  setStatus(statusEl, "Uploaded. PROCESSING: making the streams…");
  for (;;) {
    const { status, body } = await getJson(`/v1/videos/${encodeURIComponent(videoId)}`);
    if (status === 200 && body.status === "READY") {
      setPhase("ready");
      setStatus(statusEl, "READY: your video is live.", "ok");
      watchLink.href = `/watch/${encodeURIComponent(videoId)}`;
      watchLink.textContent = `Watch “${body.title}”`;
      watchArea.hidden = false;
      watchLink.focus();
      return;
    }
    if (status === 200 && body.status === "FAILED") {
      setPhase("failed");
      setStatus(statusEl, `Processing failed: ${body.failure_reason || "unknown reason"}`, "error");
      return;
    }
    if (status !== 200 && status !== 503) {
      setPhase("failed");
      setStatus(statusEl, errorMessage(body, `Could not check the video (HTTP ${status}).`), "error");
      return;
    }
    await sleep(2000);
  }
}

function videoIdFromUploadUrl(url) {
  return decodeURIComponent(new URL(url, location.href).pathname.split("/").pop());
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!form.reportValidity()) return;
  const file = form.elements.file.files[0];
  const title = form.elements.title.value.trim();
  const channel = channelInput.value.trim();
  const upload = new tus.Upload(file, {
    endpoint: "/v1/uploads",
    chunkSize: CHUNK_BYTES,
    retryDelays: [0, 1000, 3000, 5000, 10000],
    removeFingerprintOnSuccess: true,
    headers: { "X-CSRF-Token": CSRF_TOKEN },
    metadata: {
      title,
      description: form.elements.description.value,
      channel_id: channel,
      filename: file.name,
      filetype: file.type,
    },
    onProgress(sent, total) {
      const pct = total ? Math.floor((sent / total) * 100) : 0;
      progress.value = pct;
      progressText.textContent = `${pct}% · ${formatBytes(sent)} of ${formatBytes(total)}`;
    },
    onError(err) {
      setPhase("error");
      // tus-js-client wraps the HTTP answer; show the gateway's own message when there is one.
      let message = err.message;
      const resp = err.originalResponse;
      if (resp) {
        try {
          message = errorMessage(JSON.parse(resp.getBody()), message);
        } catch {
          /* not JSON: keep tus's message */
        }
      }
      setStatus(statusEl, `Upload failed: ${message}. Press Upload to try again; it resumes where it stopped.`, "error");
      submit.disabled = false;
      pauseButton.hidden = true;
    },
    onSuccess() {
      pauseButton.hidden = true;
      state.videoId = videoIdFromUploadUrl(upload.url);
      followProcessing(state.videoId);
    },
  });
  state.upload = upload;
  submit.disabled = true;
  progressArea.hidden = false;
  watchArea.hidden = true;
  setPhase("uploading");
  // Same file as an upload that was interrupted (tab closed, network lost)? Resume it.
  const previous = await upload.findPreviousUploads();
  if (previous.length) {
    upload.resumeFromPreviousUpload(previous[0]);
    setStatus(statusEl, "Resuming an earlier upload of this file…");
  } else {
    setStatus(statusEl, "Uploading…");
  }
  pauseButton.hidden = false;
  pauseButton.textContent = "Pause";
  upload.start();
});

pauseButton.addEventListener("click", () => {
  const upload = state.upload;
  if (!upload) return;
  if (state.phase === "uploading") {
    upload.abort();
    setPhase("paused");
    pauseButton.textContent = "Resume";
    setStatus(statusEl, "Paused. Press Resume to continue from where it stopped.");
  } else if (state.phase === "paused") {
    setPhase("uploading");
    pauseButton.textContent = "Pause";
    setStatus(statusEl, "Uploading…");
    upload.start();
  }
});
