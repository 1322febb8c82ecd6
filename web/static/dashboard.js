// Drydock dashboard: live logs and live pipeline pages over server-sent events, paging a log backwards, lazy step logs, confirm
// buttons. Loaded as an external file (the Content-Security-Policy allows no inline script). Everything the
// server sends as HTML here was rendered and escaped by the server's templates.
"use strict";

function followLog(details) {
  const url = details.dataset.logStream;
  const pre = details.querySelector("pre.log");
  if (!url || !pre || !window.EventSource) return;
  const source = new EventSource(url);
  source.addEventListener("log", (event) => {
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    const holder = document.createElement("template");
    holder.innerHTML = event.data;
    const first = holder.content.firstElementChild;
    if (first && first.classList.contains("cont")) {
      // The chunk goes on with the line the last one left open.
      const lines = pre.querySelectorAll(":scope > .line");
      const last = lines[lines.length - 1];
      if (last) {
        last.append(...first.childNodes);
        first.remove();
      }
    }
    pre.append(holder.content);
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  });
  source.addEventListener("end", () => {
    source.close();
    // The step finished: reload once so statuses, durations, the title and the favicon are current.
    window.setTimeout(() => window.location.reload(), 500);
  });
}

async function fetchFragment(url) {
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
  if (!response.ok) throw new Error("loading " + url + " answered " + response.status);
  return response.text();
}

function fragmentUrl(href) {
  const url = new URL(href, window.location.href);
  url.searchParams.set("fragment", "1");
  return url.toString();
}

document.addEventListener("click", async (event) => {
  const link = event.target.closest("a[data-log-earlier]");
  if (!link) return;
  event.preventDefault();
  const pre = link.closest("pre.log");
  const html = await fetchFragment(fragmentUrl(link.href));
  const before = pre ? pre.scrollHeight : 0;
  link.insertAdjacentHTML("afterend", html);
  link.remove();
  if (pre) pre.scrollTop += pre.scrollHeight - before;
});

document.addEventListener("submit", (event) => {
  const message = event.target.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
});

// Live logs, lazy step logs and scroll positions of the elements under `root` (the page, or a refreshed <main>).
function wire(root) {
  root.querySelectorAll("details[data-log-stream]").forEach(followLog);
  root.querySelectorAll("details[data-log-src]").forEach((details) => {
    details.addEventListener("toggle", async () => {
      const pre = details.querySelector("pre.log");
      if (!details.open || details.dataset.loaded || !pre || pre.querySelector(".line")) return;
      details.dataset.loaded = "1";
      pre.innerHTML = await fetchFragment(details.dataset.logSrc);
      pre.scrollTop = pre.scrollHeight;
    });
  });
  root.querySelectorAll("pre.log").forEach((pre) => { pre.scrollTop = pre.scrollHeight; });
}

// A running pipeline's page follows its events: each `update` carries the page's content (rendered and escaped
// by the server), the title and the favicon; `end` comes after the pipeline finished.
function followPipeline(live) {
  if (!window.EventSource) return false;
  const source = new EventSource(live.dataset.events);
  let shown = null;
  source.addEventListener("update", (event) => {
    const update = JSON.parse(event.data);
    // The same content again (a look that found nothing new) leaves the page, and a button about to be clicked,
    // alone.
    if (update.html === shown) return;
    shown = update.html;
    live.innerHTML = update.html;
    document.title = update.title;
    const icon = document.querySelector("link[rel=icon]");
    if (icon) icon.href = "/static/favicon-" + update.favicon + ".svg";
    live.dataset.updates = String(Number(live.dataset.updates || 0) + 1);
  });
  source.addEventListener("end", () => {
    source.close();
    delete live.dataset.events;
  });
  return true;
}

document.addEventListener("DOMContentLoaded", () => {
  wire(document);
  const live = document.querySelector("[data-events]");
  if (live && followPipeline(live)) return;
  // Pages of running things refresh themselves in place (statuses, durations, the job graph, title, favicon),
  // unless a live log is streaming: that page reloads when the step ends.
  if (!document.querySelector("details[data-log-stream]")) scheduleRefresh();
});

function scheduleRefresh() {
  const refresh = Number(document.body.dataset.refresh);
  if (refresh > 0) window.setTimeout(refreshInPlace, refresh * 1000);
}

// Fetches this page again and swaps its content, title, favicon and refresh interval in, without a reload (the
// scroll position and open forms outside <main> stay). The page is this site's own, rendered and escaped by
// the server. A failed fetch (the network, a restart) falls back to a reload.
async function refreshInPlace() {
  try {
    const response = await fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (!response.ok || response.redirected) throw new Error("refresh answered " + response.status);
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const main = page.querySelector("main");
    if (!main) throw new Error("the refreshed page has no <main>");
    const adopted = document.adoptNode(main);
    document.querySelector("main").replaceWith(adopted);
    wire(adopted);
    document.title = page.title;
    const icon = page.querySelector("link[rel=icon]");
    const current = document.querySelector("link[rel=icon]");
    if (icon && current) current.href = icon.getAttribute("href");
    if (page.body.dataset.refresh) document.body.dataset.refresh = page.body.dataset.refresh;
    else delete document.body.dataset.refresh;
    // A step that started streams its log now; the stream's end reloads the page.
    if (!adopted.querySelector("details[data-log-stream]")) scheduleRefresh();
  } catch (e) {
    window.location.reload();
  }
}
