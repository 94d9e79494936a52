// Small helpers shared by the pages.

export function $(selector) {
  return document.querySelector(selector);
}

// Every gateway error is {"error": {"code", "message"}}: surface the message.
export async function getJson(url) {
  const resp = await fetch(url, { headers: { Accept: "application/json" } });
  let body = null;
  try {
    body = await resp.json();
  } catch {
    body = null;
  }
  return { status: resp.status, ok: resp.ok, body };
}

export function errorMessage(body, fallback) {
  return (body && body.error && body.error.message) || fallback;
}

export function setStatus(el, text, kind = "") {
  el.textContent = text;
  el.dataset.kind = kind;
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
