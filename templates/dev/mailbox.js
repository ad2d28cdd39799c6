// The development mailbox (/dev/mail). Served as a file so the page's Content-Security-Policy
// can forbid inline script. The page works without it; this adds the live list, the copy
// button and a confirmation before deleting everything.
"use strict";

(function () {
  const POLL_MS = 1000;

  // The list follows new mails: poll the small JSON feed, and when its version changes fetch
  // this page again and swap the list in (the server renders rows; nothing here builds HTML).
  function setLive(text) {
    const live = document.getElementById("live");
    if (!live) return;
    live.hidden = false;
    live.textContent = text;
    live.classList.toggle("offline", text !== "live");
  }

  function follow(list) {
    let version = list.dataset.version;
    let busy = false;
    async function tick() {
      if (busy) return;
      busy = true;
      try {
        const feed = await fetch(list.dataset.feed, { headers: { "X-Mailbox-Request": "1" }, cache: "no-store" });
        if (!feed.ok) throw new Error("feed " + feed.status);
        const data = await feed.json();
        if (data.version !== version) {
          const page = await fetch(window.location.href, { cache: "no-store" });
          if (!page.ok) throw new Error("page " + page.status);
          const doc = new DOMParser().parseFromString(await page.text(), "text/html");
          const fresh = doc.getElementById("mail-list");
          if (fresh) {
            const current = document.getElementById("mail-list");
            current.replaceWith(document.importNode(fresh, true));
            list = document.getElementById("mail-list");
            version = list.dataset.version;
            bindConfirm(list);
          }
        }
        setLive("live");
      } catch (e) {
        setLive("offline");
      } finally {
        busy = false;
      }
    }
    window.setInterval(tick, POLL_MS);
    setLive("live");
  }

  function bindConfirm(root) {
    root.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    });
  }

  function bindCopy(root) {
    root.querySelectorAll("button[data-copy]").forEach(function (button) {
      button.addEventListener("click", async function () {
        const source = document.getElementById(button.dataset.copy);
        const text = source ? source.textContent.trim() : "";
        try {
          await navigator.clipboard.writeText(text);
        } catch (e) {
          // No clipboard access (an insecure origin): select the code for Ctrl+C instead.
          const range = document.createRange();
          range.selectNodeContents(source);
          const selection = window.getSelection();
          selection.removeAllRanges();
          selection.addRange(range);
        }
        button.textContent = "Copied";
        window.setTimeout(function () { button.textContent = "Copy"; }, 1500);
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    bindConfirm(document);
    bindCopy(document);
    const list = document.getElementById("mail-list");
    if (list) follow(list);
  });
})();
