// The viewer: the pods and sessions (a lineage tree), and one conversation
// at a time, followed live. Routes (the location's hash):
//   #pod=NAME      the pod's conversation, moving with it across sessions
//   #SESSION       a session (through its pod when a live pod writes it)
//   #SESSION:SEQ   the same, opened at entry SEQ
//   #session=ID    the same as #ID (what `podlog share` prints)
// The search box (GET /search) lists hits as #SESSION:SEQ links.
// Opened from a share link (`?share=TOKEN`), the page shows that link's one
// session, read-only: no lists, no input box, every request carries the
// token.

import { routes, getJSON, postJSON, openEvents, carry } from "./api.js";
import { Fold, FoldError, COMMITTED, EPHEMERAL } from "./fold.js";
import { h, renderEntry, resultLink, formatTime, formatBytes, entryLink } from "./render.js";

/** Entries a fresh attach starts with. */
const TAIL = 200;
/** Entries fetched per page back. */
const PAGE = 200;
/** At most this many entries are in the document at once. */
const MAX_RENDERED = 600;
/** Entries rendered at a time when the window moves. */
const STEP = 100;
/** How close to an edge (px) the window grows. */
const EDGE = 600;

const $ = (id) => document.getElementById(id);
const status = (text) => {
  $("status").textContent = text;
};

/** A share link's token, when the page was opened from one. */
const share = new URLSearchParams(location.search).get("share");
if (share) {
  carry("share", share);
  $("side").hidden = true;
}

// ---------------------------------------------------------------- lists

let pods = [];
let sessions = [];

function podOf(session) {
  return pods.find((p) => p.session_id === session && !p.closed && !p.lock_lost);
}

async function refreshLists() {
  // A share link reads its session and nothing else: no lists.
  if (share) return;
  try {
    const [p, s] = await Promise.all([getJSON(routes.pods()), getJSON(routes.sessions())]);
    pods = p.pods;
    sessions = s.sessions;
    drawLists();
    if (viewer) viewer.drawHead();
  } catch (err) {
    console.warn("cannot list pods and sessions", err);
  }
}

function liveBadge() {
  return h("span", { class: "badge live", title: "A live pod writes this" }, "live");
}

/** What the lists were last drawn from: they are redrawn only when it
 * changes, so that a focused link is not replaced under the keyboard. */
let drawn = "";

/** Which list link has the keyboard focus, as a selector that finds its
 * redrawn twin, or null when the focus is elsewhere. */
function focusedListLink() {
  const e = document.activeElement;
  if (!e || e.tagName !== "A") return null;
  if (e.dataset.pod !== undefined) return `a[data-pod="${CSS.escape(e.dataset.pod)}"]`;
  if (e.dataset.sessionLink !== undefined) return `a[data-session-link="${CSS.escape(e.dataset.sessionLink)}"]`;
  return null;
}

function drawLists() {
  const current = viewer ? viewer.fold.session : null;
  const signature = JSON.stringify([pods, sessions, current, viewer && viewer.pod]);
  if (signature === drawn) return;
  drawn = signature;
  // A redraw replaces the links; the one under the keyboard gets the focus
  // back, so that a list that changes while someone tabs through it does
  // not throw them back to the top of the page.
  const refocus = focusedListLink();
  drawPodsAndSessions(current);
  const again = refocus && document.querySelector(refocus);
  if (again) again.focus({ preventScroll: true });
}

function drawPodsAndSessions(current) {
  const podList = $("pods");
  podList.replaceChildren(
    ...pods.map((p) => {
      const s = sessions.find((x) => x.id === p.session_id);
      return h(
        "li",
        {},
        h(
          "a",
          { href: `#pod=${encodeURIComponent(p.name)}`, "data-pod": p.name, "aria-current": viewer && viewer.pod === p.name ? "page" : null },
          h("span", { class: "name" }, p.name),
          p.closed
            ? h("span", { class: "badge" }, "closed")
            : p.lock_lost
              ? h("span", { class: "badge" }, "lock lost")
              : liveBadge(),
          p.busy ? h("span", { class: "badge busy" }, "running") : null,
          h("span", { class: "sub" }, s ? s.title || "(untitled)" : p.session_id),
        ),
      );
    }),
  );
  if (!pods.length) podList.replaceChildren(h("li", { class: "empty" }, "No pods."));
  // Sessions, newest first, each fork under the session it was forked
  // from. A compaction continues its parent's conversation, so it stands
  // beside it (at its parent's level) rather than one level deeper: a
  // long-lived pod compacted a hundred times is a list, not a staircase.
  const byId = new Map(sessions.map((s) => [s.id, s]));
  const placeOf = (s) => {
    let at = s;
    for (let hops = 0; at && hops < 10000; hops++) {
      const parent = at.parent && byId.get(at.parent.session_id);
      if (!parent) return null;
      if (at.origin !== "compaction") return parent.id;
      at = parent;
    }
    return null;
  };
  const children = new Map();
  const roots = [];
  for (const s of sessions) {
    const parent = placeOf(s);
    if (parent) {
      if (!children.has(parent)) children.set(parent, []);
      children.get(parent).push(s);
    } else roots.push(s);
  }
  const item = (s) => {
    const kids = children.get(s.id) || [];
    return h(
      "li",
      { "data-session": s.id },
      h(
        "a",
        { href: `#${s.id}`, "data-session-link": s.id, "aria-current": s.id === current ? "page" : null },
        h("span", { class: "name" }, s.title || "(untitled)"),
        podOf(s.id) ? liveBadge() : null,
        h("span", { class: "origin" }, s.origin),
        h(
          "span",
          { class: "sub" },
          `${s.entry_count} entries · ${formatBytes(s.stored_bytes || 0)} · ${formatTime(s.updated_at)}`,
          s.redactions ? h("span", { class: "redacted", title: "secrets replaced before they were written" }, ` · ${s.redactions} redacted`) : null,
          s.parent ? ` · ${s.origin === "compaction" ? "compacted" : "forked"} at #${s.parent.seq}` : "",
        ),
      ),
      kids.length ? h("ul", {}, kids.map(item)) : null,
    );
  };
  $("tree").replaceChildren(...roots.map(item));
  if (!sessions.length) $("tree").replaceChildren(h("li", { class: "empty" }, "No sessions."));
}

// ---------------------------------------------------------------- viewer

let viewer = null;

/** One conversation on screen, fed by one event stream at a time. */
class Viewer {
  constructor({ pod, session, seq }) {
    this.pod = pod || null;
    this.wanted = session || null;
    this.jumpTo = seq || null;
    this.fold = new Fold();
    this.es = null;
    this.closed = false;
    this.retry = 0;
    this.timer = null;
    // Entries folded but not drawn yet, and the frame that will draw them.
    this.pending = [];
    this.frame = 0;
    // The rendered window, by seq (inclusive); 0 when empty.
    this.lo = 0;
    this.hi = 0;
    this.loadingOlder = false;
    this.calls = new Map();
    this.results = new Map();
    this.usage = { input: 0, output: 0, cached: 0, calls: 0 };
    this.painted = false;
    this.onScroll = () => this.scrolled();
    $("log").addEventListener("scroll", this.onScroll, { passive: true });
    for (const id of ["entries", "older", "newer", "streaming"]) $(id).replaceChildren();
    this.drawHead();
    this.connect();
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.es) this.es.close();
    $("log").removeEventListener("scroll", this.onScroll);
  }

  /** The stream URL: a resume from what the fold holds, or a fresh attach. */
  streamUrl() {
    const f = this.fold;
    const after = f.session ? `${f.session}:${f.lastSeq}` : undefined;
    const at = { after, tail: TAIL };
    return this.pod ? routes.podEvents(this.pod, at) : routes.sessionEvents(this.wanted, at);
  }

  connect() {
    if (this.closed) return;
    // Ephemeral events are never replayed: what was streamed is gone.
    this.fold.clearEphemeral();
    this.drawStreaming();
    const es = openEvents(this.streamUrl());
    this.es = es;
    es.onopen = () => {
      this.retry = 0;
      status(this.pod ? `following pod ${this.pod}` : "following the session");
    };
    const handle = (type) => (msg) => this.event(type, msg);
    for (const type of ["snapshot", "session_rotated", ...COMMITTED, ...EPHEMERAL]) {
      es.addEventListener(type, handle(type));
    }
    // The server ends the stream: shutting down (reconnect later) or
    // asking for a reconnect now. Either way, resume from what is held.
    es.addEventListener("shutdown", () => this.reconnect("the server is restarting", 500));
    es.addEventListener("reconnect", () => this.reconnect("reconnecting", 0));
    // The share link this page was opened from was revoked or expired.
    es.addEventListener("revoked", () => this.refused("This link was revoked or has expired"));
    es.onerror = () => {
      // A stream that never started may name nothing that exists.
      // So may a share link that was revoked meanwhile.
      if (!this.fold.session || share) this.checkTarget();
      this.reconnect("connection lost; reconnecting", null);
    };
  }

  /** Stops, saying so, when the pod or session viewed does not exist. */
  async checkTarget() {
    try {
      await getJSON(this.pod ? routes.pod(this.pod) : routes.session(this.wanted));
    } catch (err) {
      if (err.status === 401 && share && !this.closed) {
        this.refused("This link was revoked or has expired");
        return;
      }
      if (err.status !== 404 || this.closed) return;
      this.close();
      status("not found");
      $("view-head").replaceChildren(h("h2", {}, "Not found"), h("div", { class: "sub" }, err.message));
      $("input").hidden = true;
    }
  }

  /** Stops for good: the share link no longer opens this session. */
  refused(why) {
    this.close();
    status("link no longer valid");
    $("view-head").replaceChildren(h("h2", {}, why));
    $("entries").replaceChildren();
    $("input").hidden = true;
  }

  reconnect(why, delay) {
    if (this.es) this.es.close();
    this.es = null;
    if (this.closed) return;
    status(why);
    clearTimeout(this.timer);
    const wait = delay ?? Math.min(5000, 250 * 2 ** this.retry++);
    this.timer = setTimeout(() => this.connect(), wait);
  }

  /** Starts over with a fresh attach (after a fold error). */
  restart(err) {
    console.warn("starting the view over:", err.message);
    this.fold = new Fold();
    this.pending = [];
    this.lo = this.hi = 0;
    this.calls.clear();
    this.results.clear();
    this.usage = { input: 0, output: 0, cached: 0, calls: 0 };
    $("entries").replaceChildren();
    this.reconnect("starting over", 0);
  }

  event(type, msg) {
    if (this.es === null) return;
    let ev;
    try {
      ev = JSON.parse(msg.data);
    } catch (err) {
      console.error("malformed event", type, err);
      return;
    }
    const before = this.fold.session;
    let change;
    try {
      change = this.fold.apply(type, ev);
    } catch (err) {
      if (err instanceof FoldError) return this.restart(err);
      throw err;
    }
    if (change.reset) {
      // Whatever was waiting to be drawn is in the fold: drawn below.
      this.pending = [];
      if (this.fold.session !== before && this.pod) {
        // The pod moved to a new session: the address follows it.
        history.replaceState(null, "", `#pod=${encodeURIComponent(this.pod)}`);
      }
      this.wanted = this.fold.session;
      this.reindex();
      this.renderTail();
      this.drawHead();
      if (this.fold.session !== before) refreshLists();
      if (!this.painted) {
        this.painted = true;
        requestAnimationFrame(() => {
          window.podlogFirstPaint = performance.now();
          if (this.jumpTo) this.jump(this.jumpTo);
        });
      }
    } else if (change.appended) {
      this.index(change.appended);
      for (const w of change.appended) this.pending.push(w);
    }
    this.scheduleDraw();
    // A run's end changes the session's size and activity in the lists.
    if (type === "run_completed" || type === "run_errored") refreshLists();
  }

  /** Draws what arrived since the last frame, once per frame: a writer
   * that commits thousands of entries a second costs the page one update
   * a frame, not one per entry, so it never falls behind its stream. */
  scheduleDraw() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      if (this.closed) return;
      const appended = this.pending;
      this.pending = [];
      if (appended.length) {
        this.appendRendered(appended);
        this.drawHead();
      }
      this.drawStreaming();
    });
  }

  // --- pairing tool calls with results, usage totals

  reindex() {
    this.calls.clear();
    this.results.clear();
    this.usage = { input: 0, output: 0, cached: 0, calls: 0 };
    this.index(this.fold.entries);
  }

  index(list) {
    for (const w of list) {
      const e = w.entry;
      if (e.type === "assistant_item" && e.item && e.item.kind === "tool_call") {
        this.calls.set(e.item.id, { seq: w.seq, name: e.item.name });
      } else if (e.type === "tool_result") {
        this.results.set(e.call_id, { seq: w.seq, is_error: e.is_error });
        const slot = document.querySelector(`[data-call-status="${CSS.escape(e.call_id)}"]`);
        if (slot) slot.replaceChildren(resultLink(this.ctx(), e.call_id, this.results.get(e.call_id)));
      } else if (e.type === "llm_usage") {
        this.usage.input += e.input_tokens || 0;
        this.usage.output += e.output_tokens || 0;
        this.usage.cached += e.cached_tokens || 0;
        this.usage.calls += 1;
      }
    }
  }

  ctx() {
    return { session: this.fold.session, calls: this.calls, results: this.results };
  }

  // --- the rendered window

  render(from, to) {
    const frag = document.createDocumentFragment();
    const ctx = this.ctx();
    for (let seq = from; seq <= to; seq++) {
      const w = this.fold.at(seq);
      if (w) frag.append(renderEntry(w, ctx));
    }
    return frag;
  }

  atBottom() {
    const log = $("log");
    return log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  }

  scrollToBottom() {
    const log = $("log");
    log.scrollTop = log.scrollHeight;
  }

  /** Renders the last entries held, and scrolls to the end. */
  renderTail() {
    const f = this.fold;
    if (!f.entries.length) {
      this.lo = this.hi = 0;
      $("entries").replaceChildren();
      return;
    }
    this.hi = f.lastSeq;
    this.lo = Math.max(f.firstSeq, f.lastSeq - TAIL + 1);
    $("entries").replaceChildren(this.render(this.lo, this.hi));
    this.scrollToBottom();
    this.drawOlder();
  }

  appendRendered(list) {
    const follow = this.atBottom();
    if (this.hi !== list[0].seq - 1) {
      // The window is up in the history: leave it, say there is more.
      this.drawNewer();
      return;
    }
    $("entries").append(this.render(list[0].seq, list[list.length - 1].seq));
    this.hi = list[list.length - 1].seq;
    if (!this.lo) this.lo = list[0].seq;
    if (follow) {
      this.trimTop();
      this.scrollToBottom();
    }
  }

  trimTop() {
    const entries = $("entries");
    const log = $("log");
    while (this.hi - this.lo + 1 > MAX_RENDERED && entries.firstElementChild) {
      const el = entries.firstElementChild;
      const height = el.offsetHeight;
      el.remove();
      this.lo++;
      log.scrollTop -= height;
    }
    this.drawOlder();
  }

  trimBottom() {
    const entries = $("entries");
    while (this.hi - this.lo + 1 > MAX_RENDERED && entries.lastElementChild) {
      entries.lastElementChild.remove();
      this.hi--;
    }
    this.drawNewer();
  }

  /** Renders `count` more entries above the window, keeping the scroll. */
  growUp(count) {
    const log = $("log");
    const from = Math.max(this.fold.firstSeq, this.lo - count);
    if (from >= this.lo) return;
    const height = log.scrollHeight;
    $("entries").prepend(this.render(from, this.lo - 1));
    this.lo = from;
    log.scrollTop += log.scrollHeight - height;
    this.trimBottom();
    this.drawOlder();
  }

  growDown(count) {
    const to = Math.min(this.fold.lastSeq, this.hi + count);
    if (to <= this.hi) return;
    $("entries").append(this.render(this.hi + 1, to));
    this.hi = to;
    this.trimTop();
    this.drawNewer();
  }

  /** Fetches the page just below what is held. */
  async loadOlder(limit = PAGE) {
    const f = this.fold;
    if (this.loadingOlder || f.firstSeq <= 1) return false;
    this.loadingOlder = true;
    const session = f.session;
    try {
      const page = await getJSON(routes.entriesBefore(session, f.firstSeq, limit));
      if (this.closed || this.fold !== f || f.session !== session) return false;
      f.prepend(page.entries);
      this.index(page.entries);
      this.drawHead();
      return true;
    } catch (err) {
      console.warn("cannot load older entries", err);
      return false;
    } finally {
      this.loadingOlder = false;
      this.drawOlder();
    }
  }

  async scrolled() {
    const log = $("log");
    if (log.scrollTop < EDGE) {
      if (this.lo > this.fold.firstSeq) this.growUp(STEP);
      else if (this.fold.firstSeq > 1 && (await this.loadOlder())) this.growUp(STEP);
    }
    if (log.scrollHeight - log.scrollTop - log.clientHeight < EDGE && this.hi < this.fold.lastSeq) {
      this.growDown(STEP);
    }
  }

  /** Shows entry `seq`: pages back until it is held, renders around it. */
  async jump(seq) {
    while (seq < this.fold.firstSeq && this.fold.firstSeq > 1) {
      status(`loading back to #${seq}…`);
      if (!(await this.loadOlder(1000))) break;
    }
    const w = this.fold.at(seq);
    if (!w) {
      status(`entry #${seq} is not in this session`);
      return;
    }
    if (seq < this.lo || seq > this.hi) {
      this.lo = Math.max(this.fold.firstSeq, seq - STEP);
      this.hi = Math.min(this.fold.lastSeq, seq + STEP);
      $("entries").replaceChildren(this.render(this.lo, this.hi));
      this.drawOlder();
      this.drawNewer();
    }
    const el = document.getElementById(`e-${seq}`);
    if (el) {
      document.querySelectorAll(".entry.target").forEach((x) => x.classList.remove("target"));
      el.classList.add("target");
      el.scrollIntoView({ block: "center" });
      // Entries not drawn yet (content-visibility) take their real height
      // once scrolled near: center it again when they have.
      requestAnimationFrame(() => requestAnimationFrame(() => el.scrollIntoView({ block: "center" })));
      el.setAttribute("tabindex", "-1");
      el.focus({ preventScroll: true });
    }
    status(this.pod ? `following pod ${this.pod}` : "following the session");
  }

  // --- the rest of the page

  drawOlder() {
    const f = this.fold;
    const older = $("older");
    if (this.lo > f.firstSeq || f.firstSeq > 1) {
      const n = this.lo ? this.lo - 1 : 0;
      older.replaceChildren(
        h("button", { type: "button", onclick: () => this.scrolled() }, this.loadingOlder ? "Loading…" : `${n} earlier entries: load more`),
      );
    } else older.replaceChildren(f.entries.length ? h("span", { class: "small" }, "Start of the session") : "");
  }

  drawNewer() {
    const n = this.fold.lastSeq - this.hi;
    $("newer").replaceChildren(
      n > 0
        ? h(
            "button",
            {
              type: "button",
              onclick: () => {
                this.renderTail();
                this.drawNewer();
              },
            },
            `${n} newer entries: jump to the end`,
          )
        : "",
    );
  }

  drawStreaming() {
    const f = this.fold;
    const parts = [];
    if (f.running && !f.streaming && !f.pendingCalls.length) parts.push(h("div", { class: "small" }, "Working…"));
    for (const c of f.pendingCalls) parts.push(h("div", { class: "small" }, "Calling ", h("code", {}, c.name), "…"));
    if (f.streaming) {
      parts.push(h("article", { class: "entry kind-assistant_item streaming", "aria-busy": "true" }, h("div", { class: "label" }, "Assistant (writing…)"), h("div", { class: "text" }, f.streaming)));
    }
    const follow = this.atBottom();
    $("streaming").replaceChildren(...parts);
    if (follow) this.scrollToBottom();
  }

  drawHead() {
    const f = this.fold;
    const s = sessions.find((x) => x.id === f.session);
    const u = this.usage;
    const livePod = this.pod ? pods.find((p) => p.name === this.pod) : podOf(f.session);
    const head = [
      h("h2", {}, s ? s.title || "(untitled)" : this.pod ? `Pod ${this.pod}` : "Session"),
      h(
        "div",
        { class: "sub" },
        f.session ? h("a", { href: `#${f.session}`, id: "session-id" }, f.session) : "connecting…",
        s && s.parent ? [" · from ", h("a", { href: entryLink(s.parent.session_id, s.parent.seq) }, `${s.parent.session_id}:${s.parent.seq}`)] : null,
        f.session ? ` · ${f.lastSeq} entries` : null,
        livePod && !livePod.closed ? [" · ", liveBadge()] : null,
      ),
      u.calls
        ? h(
            "div",
            { class: "usage", id: "usage" },
            `Usage over the ${f.entries.length} entries loaded: ${u.input} input, ${u.output} output, ${u.cached} cached tokens in ${u.calls} calls`,
          )
        : null,
    ];
    $("view-head").replaceChildren(...head.filter(Boolean));
    // Input goes to a pod: only shown when one is live for this view.
    const form = $("input");
    const accepting = !share && !!(livePod && !livePod.closed);
    form.hidden = !accepting;
    form.dataset.pod = accepting ? livePod.name : "";
    document.title = s ? `${s.title || f.session} · podlog` : "podlog";
  }
}

// ---------------------------------------------------------------- routing

function parseHash() {
  let hash = decodeURIComponent(location.hash.slice(1));
  if (hash.startsWith("session=")) hash = hash.slice("session=".length);
  if (!hash) return null;
  if (hash.startsWith("pod=")) return { pod: hash.slice(4) };
  const m = /^(.*):(\d+)$/.exec(hash);
  if (m) return { session: m[1], seq: Number(m[2]) };
  return { session: hash };
}

async function route() {
  const target = parseHash();
  if (!target) {
    if (viewer) viewer.close();
    viewer = null;
    await refreshLists();
    const live = pods.find((p) => !p.closed);
    if (live) history.replaceState(null, "", `#pod=${encodeURIComponent(live.name)}`);
    else if (sessions.length) history.replaceState(null, "", `#${sessions[0].id}`);
    else {
      $("view-head").replaceChildren(h("h2", {}, "Nothing to show yet"));
      return;
    }
    return route();
  }
  // Within the view already open: just move to the entry.
  if (viewer && target.session && target.session === viewer.fold.session) {
    if (target.seq) viewer.jump(target.seq);
    return;
  }
  if (viewer && target.pod && target.pod === viewer.pod) return;
  if (target.session && !target.pod) {
    const full = sessions.find((s) => s.id === target.session || s.id.startsWith(target.session));
    const live = podOf(full ? full.id : target.session);
    if (live) target.pod = live.name;
  }
  if (viewer) viewer.close();
  viewer = new Viewer(target);
  drawLists();
}

// ---------------------------------------------------------------- search

/** The query of the hits shown, and the cursor of their next page. */
let searched = "";
let searchNext = null;
let searchTimer = null;

function hitItem(hit) {
  const snippet = hit.snippet.map((p) => (p.match ? h("mark", {}, p.text) : p.text));
  return h(
    "li",
    {},
    h(
      "a",
      { href: `#${hit.session_id}:${hit.seq}`, class: "hit", title: hit.time },
      h("span", { class: "sub" }, `${hit.session_id.slice(0, 8)}… #${hit.seq} · ${hit.kind}`),
      h("span", { class: "snippet" }, snippet),
    ),
  );
}

/** Shows the first page of hits for the box's query, or with `more` the
 * next page of the hits shown. A query the server refuses shows why. */
async function runSearch(more) {
  const list = $("search-hits");
  const error = $("search-error");
  const next = $("search-more");
  if (!more) {
    searched = $("search-q").value.trim();
    searchNext = null;
  }
  const query = searched;
  if (!query) {
    list.replaceChildren();
    error.hidden = true;
    next.hidden = true;
    return;
  }
  try {
    const page = await getJSON(routes.search(query, more ? searchNext : null));
    // A newer query was typed while this one ran: drop this answer.
    if (query !== searched) return;
    error.hidden = true;
    const items = page.hits.map(hitItem);
    if (more) list.append(...items);
    else list.replaceChildren(...(items.length ? items : [h("li", { class: "empty" }, "No entries match")]));
    searchNext = page.next;
    next.hidden = !page.next;
  } catch (err) {
    if (query !== searched) return;
    list.replaceChildren();
    error.textContent = err.message;
    error.hidden = false;
    next.hidden = true;
  }
}

$("search").addEventListener("submit", (event) => {
  event.preventDefault();
  clearTimeout(searchTimer);
  runSearch(false);
});
$("search-q").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => runSearch(false), 300);
});
$("search-more").addEventListener("click", () => runSearch(true));

// ---------------------------------------------------------------- start

$("input").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = $("input");
  const text = $("input-text").value;
  if (!text.trim() || !form.dataset.pod) return;
  const button = form.querySelector("button");
  button.disabled = true;
  try {
    await postJSON(routes.input(form.dataset.pod), { text });
    $("input-text").value = "";
    status("sent");
  } catch (err) {
    status(`not sent: ${err.message}`);
  } finally {
    button.disabled = false;
  }
});

$("input-text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    $("input").requestSubmit();
  }
});

window.addEventListener("hashchange", route);
window.podlog = { get viewer() { return viewer; }, formatBytes };
setInterval(refreshLists, 2000);
// The view starts as soon as the pods are known (whether a live pod writes
// the session asked for decides which stream to open); the session list,
// which can be long, is drawn when it comes.
refreshLists();
(share ? Promise.resolve({ pods: [] }) : getJSON(routes.pods()))
  .then((p) => {
    pods = p.pods;
  })
  .catch((err) => console.warn("cannot list pods", err))
  .then(route);
