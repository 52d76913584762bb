// zipline-sessions' pages: the one script. The pages work without it; it only shows each
// <time datetime> (UTC) in the reader's own time zone, with how long ago beside it.
"use strict";
(function () {
  var format = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  var relative = typeof Intl.RelativeTimeFormat === "function" ? new Intl.RelativeTimeFormat(undefined, { numeric: "auto" }) : null;
  var steps = [["year", 31536000], ["month", 2592000], ["day", 86400], ["hour", 3600], ["minute", 60]];

  function ago(seconds) {
    if (!relative) return "";
    for (var i = 0; i < steps.length; i++) {
      if (Math.abs(seconds) >= steps[i][1]) return relative.format(-Math.round(seconds / steps[i][1]), steps[i][0]);
    }
    return relative.format(0, "minute");
  }

  function localise() {
    var times = document.querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) {
      var when = new Date(times[i].getAttribute("datetime"));
      if (isNaN(when.getTime())) continue;
      times[i].title = times[i].textContent;
      times[i].textContent = format.format(when);
      var note = ago((Date.now() - when.getTime()) / 1000);
      if (note) times[i].insertAdjacentText("afterend", " (" + note + ")");
      times[i].className = "local";
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", localise);
  else localise();
})();
