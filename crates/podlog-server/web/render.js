// How each kind of entry is drawn. Every kind has a rendering; a kind this
// viewer does not know is shown as its raw JSON, never hidden.

import { routes, getText } from "./api.js";

/** `h("p", {class: "x"}, "text", child)`: an element. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

export function formatTime(ms) {
  if (!ms) return "";
  const d = new Date(ms);
  return d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export function entryLink(session, seq) {
  return `#${session}:${seq}`;
}

function json(value) {
  return JSON.stringify(value, null, 2);
}

function textBlock(text, path, cls = "text") {
  return h("div", { class: cls, "data-path": path }, text);
}

function raw(entry, open = false) {
  return h("details", { class: "raw", open }, h("summary", {}, "JSON"), h("pre", {}, json(entry)));
}

/** The body of one entry, by kind. `ctx` pairs tool calls and results. */
function body(w, ctx) {
  const e = w.entry;
  switch (e.type) {
    case "session_start": {
      const from = e.forked_from
        ? ["forked from ", h("a", { href: entryLink(e.forked_from.session_id, e.forked_from.seq) }, `${e.forked_from.session_id}:${e.forked_from.seq}`)]
        : e.compacted_from
          ? ["compacted from ", h("a", { href: entryLink(e.compacted_from.session_id, e.compacted_from.seq) }, `${e.compacted_from.session_id}:${e.compacted_from.seq}`)]
          : [];
      return [
        h("div", { class: "label" }, "Session start", from.length ? " — " : "", from),
        e.system_prompt ? h("details", {}, h("summary", {}, "System prompt"), textBlock(e.system_prompt, "$.system_prompt")) : null,
        e.history && e.history.length
          ? h("details", {}, h("summary", {}, `History: ${e.history.length} messages`), h("pre", {}, json(e.history)))
          : null,
        raw(e),
      ];
    }
    case "user_input":
      return [
        h("div", { class: "label" }, "User"),
        textBlock(e.text, "$.text"),
        (e.attachments || []).length
          ? h("ul", { class: "attachments" }, e.attachments.map((a) => h("li", {}, `${a.name || "attachment"} (${a.mime_type || a.media_type || "file"})`)))
          : null,
      ];
    case "assistant_item": {
      const item = e.item || {};
      if (item.kind === "text") return [h("div", { class: "label" }, "Assistant"), textBlock(item.text, "$.item.text")];
      if (item.kind === "reasoning") {
        return [h("details", { class: "reasoning" }, h("summary", {}, "Reasoning"), textBlock(item.text, "$.item.text"))];
      }
      if (item.kind === "tool_call") {
        const result = ctx.results.get(item.id);
        return [
          h("div", { class: "label" }, "Tool call ", h("code", {}, item.name)),
          h("pre", { class: "args", "data-path": "$.item.arguments" }, json(item.arguments)),
          h("div", { class: "call-status", "data-call-status": item.id }, resultLink(ctx, item.id, result)),
        ];
      }
      return unknown(e);
    }
    case "tool_result": {
      const call = ctx.calls.get(e.call_id);
      return [
        h(
          "div",
          { class: "label" },
          e.is_error ? "Tool error" : "Tool result",
          call ? [" of ", h("a", { href: entryLink(ctx.session, call.seq) }, h("code", {}, call.name))] : [" of call ", h("code", {}, e.call_id)],
        ),
        h("pre", { class: e.is_error ? "output error" : "output", "data-path": "$.output" }, e.output),
      ];
    }
    case "turn_end":
      return [h("div", { class: "label small" }, `Turn ${e.turn_count} ended`)];
    case "run_completed":
      return [h("div", { class: "label small" }, `Run completed after ${e.turn_count} turn${e.turn_count === 1 ? "" : "s"}`)];
    case "run_errored":
      return [h("div", { class: "label" }, `Run failed (${e.kind})`), textBlock(e.message, "$.message", "text error")];
    case "llm_usage":
      return [
        h(
          "div",
          { class: "label small" },
          `Usage: ${e.model}: ${e.input_tokens} in, ${e.output_tokens} out, ${e.cached_tokens || 0} cached`,
        ),
      ];
    case "system_item": {
      const item = e.item || {};
      if (item.kind === "notification") {
        return [h("div", { class: "label" }, "Notification: ", item.message), textBlock(item.body, "$.item.body")];
      }
      return [h("div", { class: "label" }, `System item (${item.kind || "unknown"})`), h("pre", {}, json(item))];
    }
    case "config_changed":
      return [h("div", { class: "label small" }, "Configuration changed"), raw(e.config)];
    case "extension":
      return [h("div", { class: "label small" }, "Extension ", h("code", {}, e.name)), raw(e.data)];
    default:
      return unknown(e);
  }
}

function unknown(e) {
  return [
    h("div", { class: "label" }, "Entry of an unknown kind ", h("code", {}, String(e.type))),
    h("pre", { class: "raw-json" }, json(e)),
  ];
}

export function resultLink(ctx, callId, result) {
  if (!result) return "waiting for the result…";
  return h(
    "a",
    { href: entryLink(ctx.session, result.seq) },
    result.is_error ? `error at #${result.seq}` : `result at #${result.seq}`,
  );
}

/** The panel of one large payload: its size, and a button that fetches it. */
function payloadPanel(article, ref) {
  let full = null;
  let preview = null;
  const target = () => article.querySelector(`[data-path="${CSS.escape(ref.path)}"]`);
  const fallback = h("pre", { class: "payload-full", hidden: true });
  const button = h("button", { type: "button", class: "expand" }, `Show all (${formatBytes(ref.size)})`);
  button.addEventListener("click", async () => {
    const el = target() || fallback;
    if (full !== null && el.dataset.expanded === "1") {
      el.textContent = preview;
      el.dataset.expanded = "0";
      if (el === fallback) fallback.hidden = true;
      button.textContent = `Show all (${formatBytes(ref.size)})`;
      return;
    }
    button.disabled = true;
    button.textContent = "Loading…";
    try {
      if (full === null) full = await getText(routes.blob(ref.hash));
      preview = preview ?? el.textContent;
      el.textContent = full;
      el.dataset.expanded = "1";
      fallback.hidden = el !== fallback;
      button.textContent = "Show less";
    } catch (err) {
      button.textContent = `Show all (${formatBytes(ref.size)}): failed, retry`;
      console.warn("payload fetch failed", err);
    } finally {
      button.disabled = false;
    }
  });
  return h(
    "div",
    { class: "payload" },
    h("span", {}, "Preview of ", h("code", {}, ref.path), ` (${formatBytes(ref.size)} in all) `),
    button,
    fallback,
  );
}

/** The element of one committed entry `w` (`{seq, entry, payloads}`). */
export function renderEntry(w, ctx) {
  const e = w.entry || {};
  const kind = e.type || "unknown";
  const article = h(
    "article",
    { class: `entry kind-${kind.replace(/[^a-z0-9_-]/gi, "")}`, id: `e-${w.seq}`, "data-seq": w.seq },
    h(
      "div",
      { class: "meta" },
      h("a", { class: "seq", href: entryLink(ctx.session, w.seq), title: "Link to this entry" }, `#${w.seq}`),
      h("time", {}, formatTime(e.ts)),
    ),
  );
  try {
    article.append(...body(w, ctx).filter(Boolean));
  } catch (err) {
    // A malformed entry of a known kind: still shown, as JSON.
    article.append(...unknown(e));
    console.warn("cannot render entry", w.seq, err);
  }
  if (w.payloads && w.payloads.length) {
    article.classList.add("lean");
    for (const ref of w.payloads) article.append(payloadPanel(article, ref));
  }
  return article;
}
