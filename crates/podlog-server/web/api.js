// Every URL the viewer fetches or streams from is built here, and only
// here: a query parameter that must travel with every request (a share
// link's token, say) is added in `url` once, for all of them.

/** Parameters added to every request the viewer makes. */
const carried = new URLSearchParams();

/** Adds `name=value` to every URL built from now on. */
export function carry(name, value) {
  carried.set(name, value);
}

/** `path` with `params` (those not null or undefined) and the carried ones. */
export function url(path, params = {}) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null) query.set(k, String(v));
  }
  for (const [k, v] of carried) query.set(k, v);
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

const enc = encodeURIComponent;

/** The routes of docs/protocol.md the viewer uses. */
export const routes = {
  pods: () => url("/pods"),
  pod: (name) => url(`/pods/${enc(name)}`),
  sessions: () => url("/sessions"),
  session: (id) => url(`/sessions/${enc(id)}`),
  entriesBefore: (id, before, limit) =>
    url(`/sessions/${enc(id)}/entries`, { before, limit }),
  blob: (hash) => url(`/blobs/${enc(hash)}`),
  podEvents: (pod, { after, tail }) =>
    url(`/pods/${enc(pod)}/events`, { after, tail }),
  sessionEvents: (id, { after, tail }) =>
    url(`/sessions/${enc(id)}/events`, { after, tail }),
  input: (pod) => url(`/pods/${enc(pod)}/input`),
  search: (q, cursor) => url("/search", { q, limit: 20, cursor }),
};

async function check(response, what) {
  if (response.ok) return response;
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error) message = body.error;
  } catch {
    // Not JSON: keep the status line.
  }
  const error = new Error(message);
  error.status = response.status;
  error.url = what;
  throw error;
}

export async function getJSON(u) {
  const r = await fetch(u, { headers: { accept: "application/json" } });
  return (await check(r, u)).json();
}

export async function getText(u) {
  return (await check(await fetch(u), u)).text();
}

export async function postJSON(u, body) {
  const r = await fetch(u, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return (await check(r, u)).json();
}

/** Opens an event stream (`EventSource`) on `u`. */
export function openEvents(u) {
  return new EventSource(u);
}
