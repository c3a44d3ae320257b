// The fold of the event stream into the log of one session, as
// podlog_protocol::LogView does it in Rust (docs/protocol.md, "What a
// client gets"): a snapshot replaces the view of its session (keeping older
// entries it joins), session_rotated starts a new session, each committed
// event appends its entry and its seq must be the last one plus one.
// Ephemeral events (text deltas, tool call starts, run starts) are kept
// aside until the committed entry that replaces them arrives.

/** The event types that carry one committed entry. */
export const COMMITTED = [
  "user_message",
  "assistant_item",
  "tool_result",
  "turn_end",
  "run_completed",
  "run_errored",
  "usage",
  "system_item",
  "entry",
];

export const EPHEMERAL = ["text_delta", "tool_call_start", "run_started"];

/** The committed entry `{seq, entry, payloads}` a committed event carries. */
export function toEntry(type, ev) {
  const { seq, ts } = ev;
  switch (type) {
    case "user_message":
      return { seq, entry: { type: "user_input", ts, text: ev.text, attachments: ev.attachments || [] } };
    case "assistant_item":
      return { seq, entry: { type: "assistant_item", ts, item: ev.item } };
    case "tool_result":
      return { seq, entry: { type: "tool_result", ts, call_id: ev.call_id, output: ev.output, is_error: !!ev.is_error } };
    case "turn_end":
      return { seq, entry: { type: "turn_end", ts, turn_count: ev.turn_count } };
    case "run_completed":
      return { seq, entry: { type: "run_completed", ts, turn_count: ev.turn_count } };
    case "run_errored":
      return { seq, entry: { type: "run_errored", ts, kind: ev.kind, message: ev.message } };
    case "usage":
      return {
        seq,
        entry: {
          type: "llm_usage", ts, model: ev.model, input_tokens: ev.input_tokens,
          output_tokens: ev.output_tokens, cached_tokens: ev.cached_tokens || 0,
        },
      };
    case "system_item":
      return { seq, entry: { type: "system_item", ts, item: ev.item } };
    case "entry":
      return { seq, entry: ev.entry, payloads: ev.payloads };
    default:
      throw new FoldError(`not a committed event: ${type}`);
  }
}

export class FoldError extends Error {}

/**
 * The log of the session viewed: its entries, contiguous by seq, from
 * `firstSeq` (1, or later for a tail-first attach) to `lastSeq`, and what
 * is being streamed after them.
 */
export class Fold {
  constructor() {
    this.session = null;
    this.entries = [];
    this.streaming = "";
    this.pendingCalls = [];
    this.running = false;
  }

  get firstSeq() {
    return this.entries.length ? this.entries[0].seq : 0;
  }

  get lastSeq() {
    return this.entries.length ? this.entries[this.entries.length - 1].seq : 0;
  }

  /** The held entry `seq`, if any. */
  at(seq) {
    const i = seq - this.firstSeq;
    return i >= 0 && i < this.entries.length ? this.entries[i] : undefined;
  }

  clearEphemeral() {
    this.streaming = "";
    this.pendingCalls = [];
  }

  /**
   * Folds one event in. Returns what changed: `{reset: true}` (the view
   * starts over: a new session or a snapshot), `{appended: [entries]}`,
   * `{ephemeral: true}`. Throws a FoldError, changing nothing, on an
   * event that does not continue the view.
   */
  apply(type, ev) {
    if (type === "snapshot") return this.snapshot(ev);
    if (type === "session_rotated") {
      if (ev.seq !== 1) throw new FoldError(`session_rotated at seq ${ev.seq}`);
      this.session = ev.session_id;
      this.entries = [{ seq: 1, entry: ev.entry, payloads: ev.payloads }];
      this.clearEphemeral();
      this.running = false;
      return { reset: true };
    }
    if (EPHEMERAL.includes(type)) {
      if (type === "text_delta") this.streaming += ev.text;
      else if (type === "tool_call_start") this.pendingCalls.push({ call_id: ev.call_id, name: ev.name });
      else this.running = true;
      return { ephemeral: true };
    }
    if (!COMMITTED.includes(type)) return {};
    if (this.session === null) throw new FoldError(`${type} at seq ${ev.seq} before any snapshot`);
    const committed = toEntry(type, ev);
    const want = this.lastSeq + 1;
    if (committed.seq !== want) {
      throw new FoldError(
        `session ${this.session}: got ${type} at seq ${committed.seq} after seq ${this.lastSeq} (gap or duplicate)`,
      );
    }
    this.entries.push(committed);
    const e = committed.entry;
    if (e.type === "assistant_item") {
      if (e.item && e.item.kind === "tool_call") {
        this.pendingCalls = this.pendingCalls.filter((c) => c.call_id !== e.item.id);
      } else {
        // The committed item carries the whole text the deltas streamed.
        this.streaming = "";
      }
    } else if (e.type === "run_completed" || e.type === "run_errored") {
      this.clearEphemeral();
      this.running = false;
    }
    return { appended: [committed] };
  }

  snapshot(ev) {
    const entries = ev.entries || [];
    const first = entries.length ? entries[0].seq : 1;
    if (first < 1) throw new FoldError(`snapshot starting at seq ${first}`);
    entries.forEach((w, i) => {
      if (w.seq !== first + i) throw new FoldError(`snapshot with a gap at seq ${w.seq}`);
    });
    const last = entries.length ? entries[entries.length - 1].seq : 0;
    if (last !== ev.end_seq) throw new FoldError(`snapshot ends at ${last}, not ${ev.end_seq}`);
    let merged = entries;
    if (ev.session_id === this.session && this.entries.length) {
      if (this.lastSeq > last) throw new FoldError(`snapshot of ${ev.session_id} takes back seq ${last + 1}`);
      // Older entries it joins are kept: a tail-first snapshot after a
      // restart does not throw away what was paged back.
      if (this.firstSeq < first && this.lastSeq + 1 >= first) {
        merged = this.entries.filter((c) => c.seq < first).concat(entries);
      }
    }
    this.session = ev.session_id;
    this.entries = merged;
    this.clearEphemeral();
    return { reset: true };
  }

  /** Puts `page` (entries just below `firstSeq`) in front; checks it joins. */
  prepend(page) {
    if (!page.length) return;
    page.forEach((w, i) => {
      if (w.seq !== page[0].seq + i) throw new FoldError(`page with a gap at seq ${w.seq}`);
    });
    if (page[page.length - 1].seq + 1 !== this.firstSeq) {
      throw new FoldError(`page ending at ${page[page.length - 1].seq} does not join seq ${this.firstSeq}`);
    }
    this.entries = page.concat(this.entries);
  }
}
