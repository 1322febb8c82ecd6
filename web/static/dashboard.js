// Drydock dashboard: live logs over server-sent events, paging a log backwards, lazy step logs, confirm
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

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("details[data-log-stream]").forEach(followLog);
  document.querySelectorAll("details[data-log-src]").forEach((details) => {
    details.addEventListener("toggle", async () => {
      const pre = details.querySelector("pre.log");
      if (!details.open || details.dataset.loaded || !pre || pre.querySelector(".line")) return;
      details.dataset.loaded = "1";
      pre.innerHTML = await fetchFragment(details.dataset.logSrc);
      pre.scrollTop = pre.scrollHeight;
    });
  });
  document.querySelectorAll("pre.log").forEach((pre) => { pre.scrollTop = pre.scrollHeight; });
  // Pages of running things reload themselves (statuses, durations, title, favicon), unless a live log is
  // streaming: that page reloads when the step ends.
  const refresh = Number(document.body.dataset.refresh);
  if (refresh > 0 && !document.querySelector("details[data-log-stream]")) {
    window.setTimeout(() => window.location.reload(), refresh * 1000);
  }
});
