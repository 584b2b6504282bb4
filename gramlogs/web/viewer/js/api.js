// The HTTP API, as the viewer calls it: the key only ever in the Gram-Key header, a 401 asks for
// the key again, a 503 (or a dropped connection) is retried with a visible "retrying", and every
// other error reaches the page with the server's own message.

const KEY = "gramlogs.key";
const PROJECT = "gramlogs.project";
const MAX_DELAY_MS = 10000;

export class ApiError extends Error {
  constructor(status, name, message) {
    super(message);
    this.status = status;
    this.name = name;
  }
}

// What the page provides: signIn(message) resolves once new credentials are stored;
// retrying(message) and recovered() show and clear the "retrying" state.
export const hooks = {
  signIn: async () => {},
  retrying: () => {},
  recovered: () => {},
};

export function credentials() {
  for (const store of [sessionStorage, localStorage]) {
    const key = store.getItem(KEY);
    if (key) return { key, project: store.getItem(PROJECT) || "" };
  }
  return null;
}

export function saveCredentials(key, project, remember) {
  forgetCredentials();
  const store = remember ? localStorage : sessionStorage;
  store.setItem(KEY, key);
  store.setItem(PROJECT, project);
}

export function forgetCredentials() {
  for (const store of [sessionStorage, localStorage]) {
    store.removeItem(KEY);
    store.removeItem(PROJECT);
  }
}

// A link made by `gramlogs serve` carries the key in the fragment (#key=...&project=...), which
// browsers never send: it moves to sessionStorage and leaves the address bar at once. A link
// must not silently sign out of other saved credentials (anyone can send a link): when they
// differ, the user is asked, and declining keeps them.
export function takeFragment() {
  if (!location.hash) return;
  const fragment = new URLSearchParams(location.hash.slice(1));
  const key = fragment.get("key");
  const project = fragment.get("project") || "";
  history.replaceState(history.state, "", location.pathname + location.search);
  if (!key) return;
  const saved = credentials();
  if (saved && (saved.key !== key || saved.project !== project)) {
    const question =
      `This link signs in with another key${project ? ` for the project "${project}"` : ""}.\n` +
      `Replace the key saved for the project "${saved.project}"?`;
    if (!confirm(question)) return;
  }
  saveCredentials(key, project, false);
}

export function headers(extra = {}) {
  const c = credentials();
  return { "Gram-Key": c ? c.key : "", "Gram-Project": c ? c.project : "", ...extra };
}

export function url(path, params) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== null && value !== undefined && value !== "") query.set(name, value);
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

let signingIn = null;
let retrying = 0; // requests waiting to try again: "retrying" shows while there is one

function signInAgain(message) {
  // Requests that fail together wait for the same sign-in.
  signingIn ??= hooks.signIn(message).finally(() => {
    signingIn = null;
  });
  return signingIn;
}

export function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        reject(signal.reason);
      },
      { once: true },
    );
  });
}

async function errorOf(response) {
  try {
    const body = await response.json();
    return new ApiError(response.status, body.name || "error", body.message || response.statusText);
  } catch {
    return new ApiError(response.status, "error", `${response.status} ${response.statusText}`);
  }
}

function retryAfter(response, fallback) {
  const seconds = Number(response.headers.get("Retry-After"));
  return Number.isFinite(seconds) && seconds > 0
    ? Math.min(seconds * 1000, MAX_DELAY_MS)
    : fallback;
}

// A response with a 2xx status, after as many sign-ins and retries as it takes; an ApiError for
// any other status; the abort reason when `signal` aborts.
export async function request(path, params, options = {}) {
  const state = { retried: false };
  try {
    return await attempt(path, params, options, state);
  } finally {
    if (state.retried && --retrying === 0) hooks.recovered();
  }
}

async function wait(message, ms, signal, state) {
  if (!state.retried) retrying += 1;
  state.retried = true;
  hooks.retrying(message);
  await sleep(ms, signal);
}

async function attempt(path, params, { signal, extraHeaders } = {}, state) {
  let delay = 1000;
  for (;;) {
    if (!credentials()) {
      await signInAgain("Sign in to read the logs.");
      continue;
    }
    let response;
    try {
      response = await fetch(url(path, params), {
        headers: headers(extraHeaders),
        signal,
        cache: "no-store",
      });
    } catch (error) {
      if (signal?.aborted) throw error;
      await wait(
        `Cannot reach the server; retrying in ${Math.round(delay / 1000)} s…`,
        delay,
        signal,
        state,
      );
      delay = Math.min(delay * 2, MAX_DELAY_MS);
      continue;
    }
    if (response.status === 401 || response.status === 403) {
      // A key that is not (or no longer) valid, or one that cannot read this project.
      const error = await errorOf(response);
      await signInAgain(`The server refused the key: ${error.message}. Sign in again.`);
      continue;
    }
    if (response.status === 503 || response.status === 429) {
      const ms = retryAfter(response, delay);
      const error = await errorOf(response);
      await wait(
        `${error.message} (${response.status}); retrying in ${Math.round(ms / 1000)} s…`,
        ms,
        signal,
        state,
      );
      delay = Math.min(delay * 2, MAX_DELAY_MS);
      continue;
    }
    if (!response.ok) throw await errorOf(response);
    return response;
  }
}

export async function getJson(path, params, options) {
  const response = await request(path, params, options);
  return response.json();
}
