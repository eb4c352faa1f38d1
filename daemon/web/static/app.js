// humanstyle's web page: refreshes the content while the daemon works, and sends pair verdicts.
"use strict";

const REFRESH_MS = 5000;
let refreshing = false;
let judging = 0;

function meta(name) {
  const el = document.querySelector(`meta[name="${name}"]`);
  return el ? el.content : "";
}

function flash(text, isError) {
  const box = document.getElementById("flash");
  const message = document.createElement("div");
  message.className = "message" + (isError ? " error" : "");
  message.textContent = text;
  box.appendChild(message);
  setTimeout(() => message.remove(), isError ? 8000 : 3000);
}

async function refresh() {
  const content = document.getElementById("content");
  if (refreshing || judging || document.hidden || content.dataset.refresh !== "on") return;
  refreshing = true;
  try {
    const url = new URL(window.location.href);
    url.searchParams.set("partial", "1");
    const resp = await fetch(url, { headers: { "X-Partial": "1" }, cache: "no-store" });
    if (resp.ok) {
      const html = await resp.text();
      if (judging) return;  // a verdict was sent meanwhile: the next refresh shows it
      content.innerHTML = html;
      document.getElementById("refreshed").textContent = "updated " + new Date().toLocaleTimeString();
    } else {
      document.getElementById("refreshed").textContent = "refresh failed (HTTP " + resp.status + ")";
    }
  } catch (err) {
    document.getElementById("refreshed").textContent = "daemon unreachable";
  } finally {
    refreshing = false;
  }
}

async function judge(button) {
  const pairId = button.dataset.pair;
  const verdict = button.dataset.verdict;
  const headers = { "Content-Type": "application/json", "X-CSRF-Token": meta("csrf-token") };
  const token = sessionStorage.getItem("humanstyle-write-token");
  if (token) headers["X-Humanstyle-Token"] = token;
  judging += 1;  // a refresh must not swap the page under the click
  button.disabled = true;
  try {
    const resp = await fetch(`/api/pairs/${pairId}/verdict`, {
      method: "POST", headers, body: JSON.stringify({ verdict }), cache: "no-store",
    });
    const body = await resp.json().catch(() => ({}));
    if (resp.status === 200 || resp.status === 202) {
      const card = document.getElementById("pair-" + pairId);
      if (card) {
        card.classList.remove("verdict-none", "verdict-good", "verdict-bad");
        card.classList.add("verdict-" + verdict);
        card.querySelector(".badge.verdict").textContent = resp.status === 200 ? verdict : verdict + " (pending)";
      }
      flash(`pair ${pairId} marked ${verdict}` + (resp.status === 202 ? " (the index has not stored it yet)" : ""));
    } else {
      flash(`pair ${pairId}: ${body.error || "HTTP " + resp.status}`, true);
    }
  } catch (err) {
    flash(`pair ${pairId}: the daemon did not answer`, true);
  } finally {
    button.disabled = false;
    judging -= 1;
  }
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button.judge");
  if (button) judge(button);
});

document.addEventListener("DOMContentLoaded", () => {
  if (meta("writes") === "token") {
    const box = document.getElementById("token-box");
    const input = document.getElementById("write-token");
    box.classList.remove("hidden");
    input.value = sessionStorage.getItem("humanstyle-write-token") || "";
    input.addEventListener("change", () => sessionStorage.setItem("humanstyle-write-token", input.value));
  }
  setInterval(refresh, REFRESH_MS);
});
