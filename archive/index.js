// Search, filters and ordering for the export's index page. The page lists
// every record without this script; it only narrows and orders the list,
// in the browser, with no network.
(function () {
  "use strict";

  function each(list, f) { Array.prototype.forEach.call(list, f); }

  var form = document.getElementById("filters");
  var list = document.getElementById("message-list");
  if (form && list) {
    var cards = Array.prototype.slice.call(list.querySelectorAll("article.msg"));
    var text = document.getElementById("filter-text");
    var direction = document.getElementById("filter-direction");
    var protection = document.getElementById("filter-protection");
    var state = document.getElementById("filter-state");
    var order = document.getElementById("filter-order");
    var count = document.getElementById("filter-count");
    var none = document.getElementById("no-match");

    var has = function (card, attr, value) {
      return value === "" || (" " + card.getAttribute(attr) + " ").indexOf(" " + value + " ") >= 0;
    };
    var matches = function (card, words) {
      if (direction.value !== "" && card.getAttribute("data-direction") !== direction.value) { return false; }
      if (!has(card, "data-protections", protection.value) || !has(card, "data-states", state.value)) { return false; }
      var hay = card.getAttribute("data-search");
      for (var i = 0; i < words.length; i++) {
        if (hay.indexOf(words[i]) < 0) { return false; }
      }
      return true;
    };
    var filter = function () {
      var words = text.value.toLowerCase().split(/\s+/).filter(Boolean);
      var shown = 0;
      each(cards, function (card) {
        card.hidden = !matches(card, words);
        if (!card.hidden) { shown++; }
      });
      count.textContent = shown === cards.length ? "All " + cards.length + " messages shown." :
        "Showing " + shown + " of " + cards.length + " messages.";
      none.hidden = shown > 0;
    };
    var keys = {
      "time": function (c) { return c.getAttribute("data-time"); },
      "time-desc": function (c) { return c.getAttribute("data-time"); },
      "from": function (c) { return c.getAttribute("data-from").toLowerCase(); },
      "subject": function (c) { return c.getAttribute("data-subject").toLowerCase(); }
    };
    var reorder = function () {
      var key = keys[order.value] || keys.time;
      var dir = order.value === "time-desc" ? -1 : 1;
      var sorted = cards.slice().sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === y) { x = a.getAttribute("data-time"); y = b.getAttribute("data-time"); }
        return x < y ? -dir : x > y ? dir : 0;
      });
      each(sorted, function (c) { list.appendChild(c); });
    };
    form.addEventListener("input", filter);
    form.addEventListener("change", function () { reorder(); filter(); });
    form.addEventListener("submit", function (e) { e.preventDefault(); });
    form.hidden = false;
    filter();
  }

  // Tables sort by a column when its heading is pressed (again: reversed).
  each(document.querySelectorAll("table.sortable"), function (table) {
    var body = table.tBodies[0];
    each(table.tHead.rows[0].cells, function (th, col) {
      var button = document.createElement("button");
      button.type = "button";
      button.textContent = th.textContent;
      th.textContent = "";
      th.appendChild(button);
      button.addEventListener("click", function () {
        var up = th.getAttribute("aria-sort") !== "ascending";
        each(table.tHead.rows[0].cells, function (other) { other.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", up ? "ascending" : "descending");
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = a.cells[col].getAttribute("data-sort") || a.cells[col].textContent.toLowerCase();
          var y = b.cells[col].getAttribute("data-sort") || b.cells[col].textContent.toLowerCase();
          return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1);
        });
        each(rows, function (r) { body.appendChild(r); });
      });
    });
  });
}());
