// The dashboard's only script: live updates from /api/events and the action buttons.
// Requests go to the same origin with the HttpOnly cookie the page was opened with.
"use strict";

(function () {
  const body = document.body;
  const live = document.getElementById("live");
  const flash = document.getElementById("flash");
  const feed = document.getElementById("feed");
  const FEED_ROWS = 200;
  const REFRESH_MS = 1000;
  const POLL_MS = Number(body.dataset.poll || 15000);

  function say(text, bad) {
    if (!flash) return;
    flash.textContent = text;
    flash.className = bad ? "bad" : "";
    flash.hidden = false;
  }

  // Re-read this page and swap in its live parts (elements with data-live and an id).
  let refreshing = false;
  let again = false;
  let timer = null;
  async function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = true;
    try {
      const answer = await fetch(location.href, { headers: { Accept: "text/html" } });
      if (answer.status === 404) {
        // Terminated, discarded or redriven away: what the page offers is gone.
        say("This is gone: it was terminated, discarded or removed.", true);
        for (const button of document.querySelectorAll("button[data-post], button[data-delete]")) {
          button.disabled = true;
        }
        return;
      }
      if (!answer.ok) return;
      const page = new DOMParser().parseFromString(await answer.text(), "text/html");
      for (const part of document.querySelectorAll("[data-live][id]")) {
        const fresh = page.getElementById(part.id);
        if (fresh) {
          // Keep open <details> open across the swap, each known by its data-key.
          const open = new Set([...part.querySelectorAll("details[open][data-key]")].map((d) => d.dataset.key));
          part.replaceWith(fresh);
          for (const details of fresh.querySelectorAll("details[data-key]")) {
            if (open.has(details.dataset.key)) details.open = true;
          }
        }
      }
    } catch (error) {
      // The next event or tick tries again.
    } finally {
      refreshing = false;
      if (again) { again = false; soon(); }
    }
  }
  function soon() {
    if (timer === null) timer = setTimeout(() => { timer = null; refresh(); }, REFRESH_MS);
  }

  function cell(text, className) {
    const td = document.createElement("td");
    if (className) {
      const span = document.createElement("span");
      span.className = className;
      span.textContent = text;
      td.appendChild(span);
    } else {
      td.textContent = text;
    }
    return td;
  }

  function addToFeed(type, data) {
    const row = document.createElement("tr");
    row.dataset.id = data.id;
    const time = cell(new Date(data.at).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC"));
    time.className = "t";
    row.appendChild(time);
    row.appendChild(cell(type, "event " + type.replace(/\./g, "-")));
    row.appendChild(cell(data.job_name));
    const link = document.createElement("a");
    link.href = body.dataset.base + "/instances/" + encodeURIComponent(data.instance_id);
    link.textContent = data.instance_id;
    const where = document.createElement("td");
    where.appendChild(link);
    row.appendChild(where);
    const fields = Object.assign({}, data);
    for (const known of ["id", "type", "at", "job_name", "job_type", "instance_id"]) delete fields[known];
    const code = document.createElement("code");
    code.textContent = JSON.stringify(fields);
    const extra = document.createElement("td");
    extra.appendChild(code);
    row.appendChild(extra);
    feed.prepend(row);
    while (feed.rows.length > FEED_ROWS) feed.deleteRow(-1);
  }

  // Time changes what a page shows without an event: alarms fall due, workers stop
  // refreshing, minutes pass. Re-read now and then while the page is in view.
  if (!feed) {
    setInterval(() => { if (document.visibilityState === "visible") soon(); }, POLL_MS);
  }

  const TYPES = ["job.started", "job.executed", "job.failed", "job.retry_exhausted",
    "job.terminated", "debounce.started", "debounce.flushed", "task.scheduled",
    "job.paused", "job.resumed"];
  let lastId = null;
  let retryMs = 1000;

  // An EventSource retries by itself after a dropped connection, but gives up for good
  // on an answer that is not a stream (503 when too many are open, 401 after a new
  // token): then open a new one, later, from the last event seen.
  function listen() {
    let url = body.dataset.events;
    if (lastId !== null) {
      const parsed = new URL(url, location.href);
      parsed.searchParams.set("after", lastId);
      url = parsed.pathname + parsed.search;
    }
    const source = new EventSource(url);
    source.onopen = () => { live.textContent = "live"; live.className = "live on"; retryMs = 1000; };
    source.onerror = () => {
      live.className = "live";
      if (source.readyState === EventSource.CLOSED) {
        live.textContent = "offline";
        setTimeout(listen, retryMs);
        retryMs = Math.min(retryMs * 2, 30000);
      } else {
        live.textContent = "reconnecting";
      }
    };
    const seen = (message) => {
      live.textContent = "live"; live.className = "live on";
      if (message.lastEventId) lastId = message.lastEventId;
      if (feed) addToFeed(message.type, JSON.parse(message.data));
      else soon();
    };
    for (const type of TYPES) source.addEventListener(type, seen);
  }
  if (window.EventSource && body.dataset.events) listen();

  // Buttons with data-post / data-delete call the API; data-confirm asks first,
  // data-reason asks for a terminate reason.
  document.addEventListener("click", async (click) => {
    const button = click.target.closest("button[data-post], button[data-delete]");
    if (!button) return;
    let payload = {};
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    if (button.dataset.reason !== undefined) {
      const reason = window.prompt(button.dataset.reason, "");
      if (reason === null) return;
      if (reason) payload = { reason: reason };
    }
    button.disabled = true;
    try {
      const answer = await fetch(button.dataset.post || button.dataset.delete, {
        method: button.dataset.post ? "POST" : "DELETE",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: button.dataset.post ? JSON.stringify(payload) : undefined,
      });
      const result = await answer.json().catch(() => ({}));
      if (answer.ok) say(button.textContent.trim() + ": " + JSON.stringify(result), false);
      else say(button.textContent.trim() + " failed: " + (result.message || answer.status), true);
    } catch (error) {
      say(button.textContent.trim() + " failed: " + error, true);
    } finally {
      button.disabled = false;
      refresh();
    }
  });
})();
