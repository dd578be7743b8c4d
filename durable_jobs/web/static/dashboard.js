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
      if (!answer.ok) return;
      const page = new DOMParser().parseFromString(await answer.text(), "text/html");
      for (const part of document.querySelectorAll("[data-live][id]")) {
        const fresh = page.getElementById(part.id);
        if (fresh) {
          // Keep open <details> open across the swap.
          const open = new Set([...part.querySelectorAll("details[open] summary")].map((s) => s.textContent));
          part.replaceWith(fresh);
          for (const s of fresh.querySelectorAll("details summary")) {
            if (open.has(s.textContent)) s.parentElement.open = true;
          }
        }
      }
    } catch (error) {
      // The next event tries again.
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

  if (window.EventSource && body.dataset.events) {
    const source = new EventSource(body.dataset.events);
    source.onopen = () => { live.textContent = "live"; live.className = "live on"; };
    source.onerror = () => { live.textContent = "reconnecting"; live.className = "live"; };
    const seen = (message) => {
      live.textContent = "live"; live.className = "live on";
      if (feed) addToFeed(message.type, JSON.parse(message.data));
      else soon();
    };
    for (const type of ["job.started", "job.executed", "job.failed", "job.retry_exhausted",
      "job.terminated", "debounce.started", "debounce.flushed", "task.scheduled",
      "job.paused", "job.resumed"]) {
      source.addEventListener(type, seen);
    }
  }

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
