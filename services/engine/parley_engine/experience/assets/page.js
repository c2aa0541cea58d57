// The Experience page's behaviour, without any framework: an insight, topic or time moves the player to when it was
// said and shows that transcript line; while the recording plays, the transcript follows it.
(function () {
  "use strict";

  const player = document.getElementById("player");
  const list = document.getElementById("lines");
  const nowSpeaking = document.getElementById("now-speaking");
  const problem = document.getElementById("player-problem");
  const lines = list ? Array.from(list.querySelectorAll("li[data-start]")) : [];
  const starts = lines.map((line) => Number(line.dataset.start));
  const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  let playing = null;
  let readerScrolledAt = 0;

  // The last line that starts at or before `seconds`.
  function lineAt(seconds) {
    let low = 0;
    let high = starts.length - 1;
    let found = null;
    while (low <= high) {
      const middle = (low + high) >> 1;
      if (starts[middle] <= seconds + 0.05) {
        found = lines[middle];
        low = middle + 1;
      } else {
        high = middle - 1;
      }
    }
    return found;
  }

  // Keeps the playing line in view inside the transcript's own scroll box, unless the reader scrolled it lately.
  function follow(line) {
    if (!list || list.scrollHeight <= list.clientHeight + 1 || Date.now() - readerScrolledAt < 4000) {
      return;
    }
    const top = line.offsetTop - list.clientHeight / 3;
    list.scrollTo({ top: Math.max(0, top), behavior: reducedMotion ? "auto" : "smooth" });
  }

  function markPlaying(line) {
    if (line === playing) {
      return;
    }
    if (playing) {
      playing.classList.remove("is-playing");
      playing.removeAttribute("aria-current");
    }
    playing = line;
    if (line) {
      line.classList.add("is-playing");
      line.setAttribute("aria-current", "true");
      if (nowSpeaking) {
        nowSpeaking.textContent = line.dataset.speaker || "—";
      }
      follow(line);
    }
  }

  function show(line, moveFocus) {
    line.classList.add("is-target");
    window.setTimeout(() => line.classList.remove("is-target"), 2000);
    line.scrollIntoView({ block: "center", behavior: reducedMotion ? "auto" : "smooth" });
    if (moveFocus) {
      line.focus({ preventScroll: true });
    }
  }

  function highlightTopic(button) {
    const pressed = button.getAttribute("aria-pressed") === "true";
    document.querySelectorAll("button.topic[aria-pressed='true']").forEach((other) => {
      other.setAttribute("aria-pressed", "false");
    });
    lines.forEach((line) => line.classList.remove("is-topic"));
    if (pressed) {
      return false;
    }
    button.setAttribute("aria-pressed", "true");
    (button.dataset.topicMessages || "").split(" ").forEach((id) => {
      const line = id && document.getElementById("m-" + id);
      if (line) {
        line.classList.add("is-topic");
      }
    });
    return true;
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-seek]");
    if (!button) {
      return;
    }
    if (button.classList.contains("topic") && !highlightTopic(button)) {
      return;
    }
    const seconds = Number(button.dataset.seek);
    const line = document.getElementById("m-" + button.dataset.message);
    if (player && Number.isFinite(seconds)) {
      player.currentTime = seconds;
      const started = player.play();
      if (started) {
        started.catch(() => undefined); // autoplay refused: the position has moved all the same
      }
      markPlaying(line);
    }
    if (line) {
      // From an insight, focus follows to the transcript line; from a line's own time or a topic (a toggle), it
      // stays on the button.
      show(line, !list.contains(button) && !button.classList.contains("topic"));
    }
  });

  if (list) {
    ["wheel", "touchmove", "keydown"].forEach((kind) => {
      list.addEventListener(kind, () => {
        readerScrolledAt = Date.now();
      }, { passive: true });
    });
  }

  if (player) {
    const update = () => markPlaying(lineAt(player.currentTime));
    player.addEventListener("timeupdate", update);
    player.addEventListener("seeked", update);
    player.addEventListener("error", () => {
      if (problem) {
        problem.hidden = false;
      }
    });
  }
})();
