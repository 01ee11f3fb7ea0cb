// Server-Sent Events read with fetch rather than EventSource: EventSource cannot send the bearer
// token, and reading the stream ourselves lets us resume with Last-Event-ID after a dropped connection.

import { authHeaders } from "./api.js";
import { sleep } from "./dom.js";

/** Parse "event:", "data:", "id:" lines; call emit({event, data, id}) per blank-line-terminated block. */
export function makeParser(emit) {
  let buffer = "";
  let event = "message";
  let data = [];
  let id = null;
  return (chunk) => {
    buffer += chunk;
    // a "\r" at the very end may be half of a "\r\n" split across chunks: wait for the next one
    const held = buffer.endsWith("\r") ? 1 : 0;
    const lines = buffer.slice(0, buffer.length - held).split(/\r\n|\r|\n/);
    buffer = lines.pop() + (held ? "\r" : ""); // an unfinished line waits for the next chunk
    for (const line of lines) {
      if (line === "") {
        if (data.length) {
          const text = data.join("\n");
          let parsed = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            /* plain text data */
          }
          emit({ event, data: parsed, id });
        }
        event = "message";
        data = [];
        continue;
      }
      if (line.startsWith(":")) continue; // keep-alive comment
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
      else if (field === "id") id = value;
    }
  };
}

/**
 * Follow an event stream. onEvent({event, data, id}) for each event; when the server closes the
 * stream, onEnd() decides: return true to reconnect (resuming after the last id), false to stop.
 * Network errors reconnect with backoff; a 4xx answer stops and reports through onError.
 */
export function subscribe(path, { onEvent, onEnd = async () => false, onError = () => {} }) {
  let stopped = false;
  let controller = null;
  let lastId = null;

  async function run() {
    let backoff = 500;
    while (!stopped) {
      controller = new AbortController();
      try {
        const headers = { Accept: "text/event-stream", ...authHeaders() };
        if (lastId !== null) headers["Last-Event-ID"] = lastId;
        const res = await fetch(path, { headers, signal: controller.signal });
        if (res.status >= 400 && res.status < 500 && res.status !== 429) {
          onError(new Error(`event stream: HTTP ${res.status}`));
          return;
        }
        if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
        backoff = 500;
        const parse = makeParser((ev) => {
          if (ev.id !== null) lastId = ev.id;
          if (!stopped) onEvent(ev);
        });
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          parse(value);
        }
        if (stopped || !(await onEnd())) return;
      } catch (e) {
        if (stopped) return;
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 8000);
      }
    }
  }

  run();
  return {
    close() {
      stopped = true;
      if (controller) controller.abort();
    },
  };
}
