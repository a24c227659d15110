// Copy buttons: <button class="copy" data-copy="TEXT">. The pages work without this file.
(function () {
  "use strict";

  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    var done = false;
    try {
      done = document.execCommand("copy");
    } catch (error) {
      done = false;
    }
    document.body.removeChild(area);
    return done ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }

  function copy(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () {
        return fallbackCopy(text);
      });
    }
    return fallbackCopy(text);
  }

  function flash(button, label) {
    var original = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", original);
    button.textContent = label;
    button.classList.add("copied");
    window.setTimeout(function () {
      button.textContent = original;
      button.classList.remove("copied");
    }, 1500);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button.copy[data-copy]");
    if (!button) {
      return;
    }
    copy(button.getAttribute("data-copy")).then(
      function () { flash(button, "Copied"); },
      function () { flash(button, "Press Ctrl+C"); }
    );
  });
})();

// Live text: <pre data-follow="URL"> appends what URL streams (same-origin, with the session)
// and reloads the page when the stream ends, so the page shows the final state.
(function () {
  "use strict";

  function follow(pre) {
    var url = pre.getAttribute("data-follow");
    if (!url || !window.fetch || !window.TextDecoder) {
      return;
    }
    pre.textContent = "";
    fetch(url, { credentials: "same-origin" }).then(function (response) {
      if (!response.ok || !response.body) {
        return;
      }
      var reader = response.body.getReader();
      var decoder = new TextDecoder();
      function pump() {
        return reader.read().then(function (chunk) {
          if (chunk.done) {
            window.location.reload();
            return;
          }
          var atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
          pre.textContent += decoder.decode(chunk.value, { stream: true });
          if (atBottom) {
            pre.scrollTop = pre.scrollHeight;
          }
          return pump();
        });
      }
      return pump();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("pre[data-follow]").forEach(follow);
  });
})();
