// Swarmer's web UI: plain JavaScript, no build step. The page starts from
// the configuration embedded by the server (#config), follows the test
// through the /stream Server-Sent Events (one message a second), and talks
// to the same Locust-compatible API that scripts use.
(function () {
  "use strict";

  var config = JSON.parse(document.getElementById("config").textContent);
  var base = config.base || "";
  var PAGE_SIZE = 100;

  var $ = function (id) { return document.getElementById(id); };
  var latest = null;          // the newest /stats/requests message
  var charts = null;          // SwarmerCharts, built when the tab first shows
  var workerCharts = null;    // SwarmerWorkerCharts, from the first message with workers
  var lastPointTime = 0;      // newest chart point drawn
  var activeTab = "stats";
  var page = 0;
  var sortKey = null, sortDir = 1;

  // ---- helpers ---------------------------------------------------------

  function api(path, options) {
    options = options || {};
    options.headers = Object.assign({ "X-Swarmer-UI": "1" }, options.headers || {});
    options.credentials = "same-origin";
    return fetch(base + path, options).then(function (r) {
      if (r.status === 401) { window.location.href = base + "/login"; throw new Error("log in first"); }
      return r;
    });
  }

  function number(v, decimals) {
    if (v === null || v === undefined || v === "") return "";
    var n = Number(v);
    if (!isFinite(n)) return String(v);
    if (decimals === 0) return Math.round(n).toLocaleString("en-US");
    return n.toLocaleString("en-US", { maximumFractionDigits: decimals === undefined ? 2 : decimals });
  }

  // A Unix time as the local date and time of day.
  function clock(seconds) {
    if (!seconds) return "";
    var d = new Date(seconds * 1000);
    var pad = function (n) { return String(n).padStart(2, "0"); };
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function cell(tr, text, cls) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function form(fields) {
    var params = new URLSearchParams();
    fields.forEach(function (f) { params.append(f[0], f[1]); });
    return params;
  }

  // ---- start form ------------------------------------------------------

  function buildStartForm() {
    if (config.shape) {
      $("f-shape-note").hidden = false;
      $("f-shape-name").textContent = config.shape;
    }
    $("f-users").value = config.defaults.users;
    $("f-rate").value = config.defaults.spawn_rate;
    $("f-host").value = config.host || "";
    if (config.defaults.run_time) $("f-run-time").value = config.defaults.run_time + "s";
    if (config.class_picker && config.classes.length) {
      var box = $("f-classes");
      box.hidden = false;
      config.classes.forEach(function (c) {
        var label = document.createElement("label");
        label.className = "check";
        var input = document.createElement("input");
        input.type = "checkbox"; input.name = "user_classes"; input.value = c.name; input.checked = true;
        label.appendChild(input);
        label.appendChild(document.createTextNode(c.name + (c.fixed_count != null ? " (fixed " + c.fixed_count + ")" : " (weight " + c.weight + ")")));
        box.appendChild(label);
      });
    }
    if (config.options.length) {
      var opts = $("f-options");
      opts.hidden = false;
      config.options.forEach(function (o) {
        var label = document.createElement("label");
        var input = document.createElement("input");
        input.name = o.name;
        input.dataset.option = o.kind;
        var value = o.value != null ? o.value : (o.default != null ? o.default : "");
        if (o.kind === "boolean") {
          label.className = "check";
          input.type = "checkbox";
          input.checked = value === "true";
          label.appendChild(input);
          label.appendChild(document.createTextNode(o.name));
        } else if (o.choices && o.choices.length) {
          // A list of the allowed values (Locust's choices=); an empty
          // entry first when the plan has no default (it picks one itself).
          var select = document.createElement("select");
          select.name = o.name;
          select.dataset.option = o.kind;
          if (!value) select.appendChild(new Option("", ""));
          o.choices.forEach(function (c) { select.appendChild(new Option(c, c, false, c === value)); });
          label.appendChild(document.createTextNode(o.name));
          label.appendChild(select);
        } else {
          input.type = o.kind === "number" ? "number" : "text";
          if (o.kind === "number") input.step = "any";
          input.value = value;
          label.appendChild(document.createTextNode(o.name));
          label.appendChild(input);
        }
        if (o.help) {
          var help = document.createElement("span");
          help.className = "help"; help.textContent = o.help;
          label.appendChild(help);
        }
        opts.appendChild(label);
      });
    }
    $("start-form").addEventListener("submit", function (event) {
      event.preventDefault();
      var fields = [
        ["user_count", $("f-users").value], ["spawn_rate", $("f-rate").value],
        ["host", $("f-host").value], ["run_time", $("f-run-time").value],
        ["arrival_rate", $("f-arrival-rate").value], ["arrival_stages", $("f-arrival-stages").value],
        ["max_users", $("f-max-users").value],
      ];
      document.querySelectorAll("#f-classes input:checked").forEach(function (i) { fields.push(["user_classes", i.value]); });
      document.querySelectorAll("#f-options input, #f-options select").forEach(function (i) {
        fields.push([i.name, i.type === "checkbox" ? String(i.checked) : i.value]);
      });
      $("start-error").textContent = "";
      api("/swarm", { method: "POST", body: form(fields) }).then(function (r) { return r.json(); }).then(function (answer) {
        if (!answer.success) { $("start-error").textContent = answer.message; return; }
        if ($("new-dialog").open) $("new-dialog").close();
        lastPointTime = 0;
        if (charts) charts.reset([]);
        render(latest && Object.assign({}, latest, { state: "spawning" }));
      }).catch(function (e) { $("start-error").textContent = String(e.message || e); });
    });
  }

  // ---- header buttons --------------------------------------------------

  function wireButtons() {
    $("btn-stop").addEventListener("click", function () { api("/stop", { method: "POST" }); });
    $("btn-reset").addEventListener("click", function () {
      api("/stats/reset", { method: "POST" }).then(function () {
        lastPointTime = 0;
        if (charts) charts.reset([]);
        $("n-failures").textContent = "";
        $("n-exceptions").textContent = "";
      });
    });
    // "New test": the start form in a dialog; Cancel leaves the last results.
    $("btn-new").addEventListener("click", function () {
      var dialog = $("new-dialog");
      dialog.appendChild($("start-form"));
      $("f-cancel").hidden = false;
      $("start-error").textContent = "";
      dialog.showModal();
    });
    $("f-cancel").addEventListener("click", function () { $("new-dialog").close(); });
    $("btn-edit").addEventListener("click", function () {
      $("e-users").value = latest ? latest.target_user_count || latest.user_count : config.defaults.users;
      $("e-rate").value = $("f-rate").value || config.defaults.spawn_rate;
      // An arrival-rate test stays one: its rate and pool can be changed.
      var open = Boolean(latest && latest.arrival);
      $("e-arrival").hidden = !open;
      $("e-arrival-rate").value = open ? $("f-arrival-rate").value : "";
      $("e-max-users").value = open ? $("f-max-users").value : "";
      $("edit-error").textContent = "";
      $("edit-dialog").showModal();
    });
    $("e-cancel").addEventListener("click", function () { $("edit-dialog").close(); });
    $("edit-form").addEventListener("submit", function (event) {
      event.preventDefault();
      var fields = [["user_count", $("e-users").value], ["spawn_rate", $("e-rate").value]];
      if (!$("e-arrival").hidden) {
        fields.push(["arrival_rate", $("e-arrival-rate").value], ["max_users", $("e-max-users").value]);
      }
      api("/swarm", { method: "POST", body: form(fields) }).then(function (r) { return r.json(); }).then(function (answer) {
        if (!answer.success) { $("edit-error").textContent = answer.message; return; }
        $("edit-dialog").close();
      });
    });
    $("btn-theme").addEventListener("click", function () {
      var now = document.documentElement.getAttribute("data-theme") === "dark" ? "light" : "dark";
      document.documentElement.setAttribute("data-theme", now);
      try { localStorage.setItem("swarmer-theme", now); } catch (e) {}
      if (charts) { charts.rebuild(); reloadHistory(); }
    });
    if (config.login) $("logout-form").hidden = false;
  }

  // ---- tabs ------------------------------------------------------------

  function showTab(name) {
    activeTab = name;
    document.querySelectorAll(".tabs button").forEach(function (b) {
      b.setAttribute("aria-selected", String(b.dataset.tab === name));
    });
    document.querySelectorAll(".tab").forEach(function (t) { t.hidden = t.id !== "tab-" + name; });
    if (name === "charts") {
      if (!charts) { charts = window.SwarmerCharts.create($("charts"), []); reloadHistory(); }
      else charts.resize();
    }
    if (name === "workers" && workerCharts) workerCharts.resize();
    refreshTab();
  }

  function reloadHistory() {
    api("/stats/history").then(function (r) { return r.json(); }).then(function (points) {
      charts.reset(points);
      lastPointTime = points.length ? points[points.length - 1][0] : 0;
    });
  }

  function refreshTab() {
    // Exceptions on every tab: their badge stays current.
    api("/exceptions").then(function (r) { return r.json(); }).then(renderExceptions);
    if (activeTab === "ratios") {
      api("/tasks").then(function (r) { return r.json(); }).then(renderRatios);
    } else if (activeTab === "logs") {
      api("/logs").then(function (r) { return r.json(); }).then(function (logs) {
        var box = $("logs");
        var atEnd = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
        box.textContent = logs.master.join("\n");
        if (atEnd) box.scrollTop = box.scrollHeight;
      });
    }
  }

  // ---- statistics table ------------------------------------------------

  var COLUMNS = [
    ["method", null, "text method"], ["name", null, "text"], ["num_requests", 0], ["num_failures", 0],
    ["median_response_time", 3], ["response_time_percentile_0.95", 3], ["response_time_percentile_0.99", 3],
    ["avg_response_time", 3], ["min_response_time", 3], ["max_response_time", 3],
    ["avg_content_length", 0], ["current_rps", 2], ["current_fail_per_sec", 2],
  ];

  // A row's value: the exact figure (to the microsecond) where the API
  // has one, else Locust's field.
  function field(stat, key) {
    return stat.exact && stat.exact[key] !== undefined ? stat.exact[key] : stat[key];
  }

  function row(stat) {
    var tr = document.createElement("tr");
    COLUMNS.forEach(function (c) {
      var v = field(stat, c[0]);
      cell(tr, c[1] === null ? v : number(v, c[1]), c[2]);
    });
    return tr;
  }

  function renderStats(message) {
    var rows = message.stats.slice(0, -1);
    var total = message.stats[message.stats.length - 1];
    var filter = $("stats-search").value.trim().toLowerCase();
    if (filter) {
      rows = rows.filter(function (s) { return (s.method + " " + s.name).toLowerCase().indexOf(filter) >= 0; });
    }
    if (sortKey) {
      rows.sort(function (a, b) {
        var x = field(a, sortKey), y = field(b, sortKey);
        return (x < y ? -1 : x > y ? 1 : 0) * sortDir;
      });
    }
    var pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
    if (page >= pages) page = pages - 1;
    var body = document.createElement("tbody");
    rows.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE).forEach(function (s) { body.appendChild(row(s)); });
    var table = $("stats-table");
    table.replaceChild(body, table.tBodies[0]);
    var foot = document.createElement("tfoot");
    if (total) foot.appendChild(row(total));
    table.replaceChild(foot, table.tFoot);
    $("stats-count").textContent = rows.length + " of " + (message.stats.length - 1) + " names";
    $("page-info").textContent = "page " + (page + 1) + " of " + pages;
    $("page-prev").disabled = page === 0;
    $("page-next").disabled = page >= pages - 1;
  }

  function wireTable() {
    $("stats-search").addEventListener("input", function () { page = 0; if (latest) renderStats(latest); });
    $("page-prev").addEventListener("click", function () { page = Math.max(0, page - 1); if (latest) renderStats(latest); });
    $("page-next").addEventListener("click", function () { page += 1; if (latest) renderStats(latest); });
    document.querySelectorAll("#stats-table th[data-key]").forEach(function (th) {
      th.addEventListener("click", function () {
        var key = th.dataset.key;
        sortDir = sortKey === key ? -sortDir : (key === "name" || key === "method" ? 1 : -1);
        sortKey = key;
        document.querySelectorAll("#stats-table th").forEach(function (h) { h.classList.remove("sorted-asc", "sorted-desc"); });
        th.classList.add(sortDir > 0 ? "sorted-asc" : "sorted-desc");
        if (latest) renderStats(latest);
      });
    });
    document.querySelectorAll(".tabs button").forEach(function (b) {
      b.addEventListener("click", function () { showTab(b.dataset.tab); });
    });
  }

  // ---- other tabs ------------------------------------------------------

  function renderFailures(errors) {
    var body = document.createElement("tbody");
    errors.slice().sort(function (a, b) { return b.occurrences - a.occurrences; }).forEach(function (e) {
      var tr = document.createElement("tr");
      cell(tr, number(e.occurrences, 0)); cell(tr, e.method, "text"); cell(tr, e.name, "text"); cell(tr, e.error, "text");
      cell(tr, clock(e.first_seen)); cell(tr, clock(e.last_seen));
      body.appendChild(tr);
    });
    var table = $("failures-table");
    table.replaceChild(body, table.tBodies[0]);
    $("n-failures").textContent = errors.length ? String(errors.length) : "";
  }

  // An arrival-rate test: its rate, iterations, and the response times
  // counted from when each request was due.
  function renderArrival(message) {
    var corrected = message.corrected || [];
    var iterations = message.iterations;
    $("arrival-box").hidden = !message.arrival && corrected.length === 0;
    $("arrival-rate").textContent = message.arrival || "";
    $("iterations-line").textContent = iterations
      ? "Iterations: " + number(iterations.started, 0) + " started, " + number(iterations.dropped, 0) +
        " dropped (" + number(iterations.dropped_ratio * 100, 2) + "%); now " +
        number(iterations.current_started_per_sec, 1) + " started/s, " +
        number(iterations.current_dropped_per_sec, 1) + " dropped/s"
      : "";
    var body = document.createElement("tbody");
    corrected.forEach(function (s, i) {
      var tr = row(s);
      if (i === corrected.length - 1) { tr.className = "total"; tr.children[1].textContent = "Aggregated"; tr.children[0].textContent = ""; }
      body.appendChild(tr);
    });
    var table = $("corrected-table");
    table.replaceChild(body, table.tBodies[0]);
  }

  // The test's notes (warnings with their time, guards, lost workers),
  // redrawn only when they change.
  var shownNotes = "";
  function renderNotes(notes) {
    var list = notes || [];
    var key = list.join("\n");
    if (key === shownNotes) return;
    shownNotes = key;
    $("notes-box").hidden = list.length === 0;
    var ul = $("notes-list");
    ul.textContent = "";
    list.forEach(function (n) {
      var li = document.createElement("li");
      li.textContent = n;
      ul.appendChild(li);
    });
  }

  // The run's --threshold verdicts so far (the command line's).
  function renderThresholds(thresholds) {
    var list = thresholds || [];
    $("thresholds-box").hidden = list.length === 0;
    var body = document.createElement("tbody");
    var failed = 0;
    list.forEach(function (t) {
      var tr = document.createElement("tr");
      cell(tr, t.threshold, "text"); cell(tr, t.actual);
      cell(tr, t.passed ? "passed" : "FAILED", t.passed ? "text ok" : "text failed");
      if (!t.passed) failed += 1;
      body.appendChild(tr);
    });
    var table = $("thresholds-table");
    table.replaceChild(body, table.tBodies[0]);
    $("thresholds-summary").textContent = (list.length - failed) + " of " + list.length + " passed";
  }

  function renderExceptions(answer) {
    var body = document.createElement("tbody");
    answer.exceptions.forEach(function (e) {
      var tr = document.createElement("tr");
      cell(tr, number(e.count, 0)); cell(tr, e.msg, "text");
      var td = cell(tr, "", "text");
      var pre = document.createElement("pre"); pre.textContent = e.traceback; td.appendChild(pre);
      cell(tr, e.nodes, "text");
      body.appendChild(tr);
    });
    var table = $("exceptions-table");
    table.replaceChild(body, table.tBodies[0]);
    $("n-exceptions").textContent = answer.exceptions.length ? String(answer.exceptions.length) : "";
  }

  function ratioList(tasks) {
    var ul = document.createElement("ul");
    Object.keys(tasks || {}).forEach(function (name) {
      var li = document.createElement("li");
      li.textContent = name + ": " + number(tasks[name].ratio * 100, 1) + "%";
      if (tasks[name].tasks) li.appendChild(ratioList(tasks[name].tasks));
      ul.appendChild(li);
    });
    return ul;
  }

  function renderRatios(answer) {
    var box = $("ratios");
    box.textContent = "";
    [["per_class", "Ratio per user class"], ["total", "Total ratio"]].forEach(function (part) {
      var h = document.createElement("h3"); h.textContent = part[1]; box.appendChild(h);
      var ul = document.createElement("ul");
      Object.keys(answer[part[0]]).forEach(function (cls) {
        var li = document.createElement("li");
        li.textContent = cls + ": " + number(answer[part[0]][cls].ratio * 100, 1) + "%";
        li.appendChild(ratioList(answer[part[0]][cls].tasks));
        ul.appendChild(li);
      });
      box.appendChild(ul);
    });
  }

  function renderWorkers(workers) {
    var body = document.createElement("tbody");
    workers.forEach(function (w) {
      var tr = document.createElement("tr");
      cell(tr, w.id, "text"); cell(tr, w.message ? w.state + ": " + w.message : w.state, "text");
      cell(tr, number(w.user_count, 0));
      cell(tr, number(w.cpu_usage, 1)); cell(tr, number(w.memory_usage / 1048576, 1) + " MiB");
      body.appendChild(tr);
    });
    var table = $("workers-table");
    table.replaceChild(body, table.tBodies[0]);
  }

  // ---- the load shape (phases) driving the test ---------------------------

  function renderShape(shape) {
    $("h-shape-box").hidden = !shape;
    $("edit-shape-note").hidden = !shape || shape.paused;
    if (!shape) return;
    $("edit-shape-name").textContent = shape.name;
    var text = (shape.step || "step") + " (" + shape.step_number + ")";
    if (shape.paused) {
      text += " · paused: the load was changed by hand";
    } else if (shape.step_ends) {
      var left = Math.max(0, Math.round(shape.step_ends - Date.now() / 1000));
      text += " · " + left + " s left";
    }
    $("h-shape").textContent = text;
    $("h-shape").title = "Load shape " + shape.name;
  }

  // ---- the whole page --------------------------------------------------

  function render(message) {
    if (!message) return;
    latest = message;
    var state = message.state;
    var idle = state === "ready" || state === "stopped";
    var running = state === "spawning" || state === "running";
    $("h-host").textContent = message.host || config.host || "–";
    $("h-state").textContent = state.toUpperCase();
    $("h-state").className = running ? "ok" : "";
    $("h-users").textContent = number(message.user_count, 0);
    $("h-rps").textContent = number(message.current_rps, 1);
    $("h-fail").textContent = number(message.fail_ratio * 100, 1) + "%";
    if (message.workers) {
      $("h-workers-box").hidden = false;
      $("tab-workers-button").hidden = false;
      $("h-workers").textContent = number(message.worker_count, 0);
      renderWorkers(message.workers);
      if (!workerCharts) workerCharts = window.SwarmerWorkerCharts.create($("worker-charts"));
      workerCharts.push(Math.floor(Date.now() / 1000), message.workers);
    }
    renderShape(message.shape);
    renderThresholds(message.thresholds);
    renderNotes(message.notes);
    renderArrival(message);
    var formVisible = state === "ready";
    $("start").hidden = !formVisible;
    $("dashboard").hidden = formVisible;
    $("btn-edit").hidden = !running;
    $("btn-stop").hidden = !running;
    $("btn-reset").hidden = formVisible;
    $("btn-new").hidden = state !== "stopped";
    document.body.dataset.state = state;
    if (!formVisible) {
      renderStats(message);
      renderFailures(message.errors);
      if (charts && message.step_marks) {
        charts.setMarks(message.step_marks.map(function (m) { return [m.start, m.name]; }));
      }
      if (charts && message.history_point && message.history_point[0] > lastPointTime) {
        lastPointTime = message.history_point[0];
        charts.push(message.history_point);
      }
    }
    if (idle && !formVisible) { /* keep the last numbers on screen */ }
  }

  function connect() {
    var source = new EventSource(base + "/stream");
    var ticks = 0;
    source.addEventListener("stats", function (event) {
      render(JSON.parse(event.data));
      ticks += 1;
      if (ticks % 2 === 0) refreshTab();
    });
    source.onerror = function () {
      // The browser reconnects by itself; check whether a login is needed.
      api("/stats/requests").catch(function () {});
    };
  }

  $("plan-name").textContent = config.plan;
  $("version").textContent = config.version;
  if (config.full_history) $("dl-history-item").hidden = false;
  buildStartForm();
  wireButtons();
  wireTable();
  api("/stats/requests").then(function (r) { return r.json(); }).then(function (m) {
    render(m);
    connect();
  });
  window.addEventListener("resize", function () {
    if (charts && activeTab === "charts") charts.resize();
    if (workerCharts && activeTab === "workers") workerCharts.resize();
  });
})();
