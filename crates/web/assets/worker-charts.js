// The Workers tab's charts: each worker's CPU (% of one core) and memory
// (MiB) over time, drawn with uPlot from the samples the page receives
// (the master keeps no per-worker history: a thousand workers would cost
// it memory). Up to EACH workers get a line of their own; past that, the
// lowest, mean and highest over the workers.
(function (global) {
  "use strict";

  var EACH = 8;
  var KEEP = 3600;
  var COLORS = ["#1565c0", "#2e7d32", "#c62828", "#6a1b9a", "#ef6c00", "#00838f", "#ad1457", "#4e342e"];
  var SPECS = [
    { id: "worker-cpu", title: "CPU per worker (% of one core)", value: function (w) { return w.cpu_usage; } },
    { id: "worker-memory", title: "Memory per worker (MiB)", value: function (w) { return w.memory_usage / 1048576; } },
  ];

  function cssVar(name, fallback) {
    var v = getComputedStyle(document.documentElement).getPropertyValue(name);
    return v && v.trim() ? v.trim() : fallback;
  }

  // Samples: {t: unix seconds, workers: {id: {cpu_usage, memory_usage}}}.
  function create(container) {
    var samples = [];
    var charts = [];
    var labels = [];
    var seen = {};  // every worker id drawn so far
    var summarizedOnly = false;  // past EACH workers: samples keep summaries only

    // The lines: each worker's id (few workers) or lowest, mean, highest.
    function lines() {
      var all = Object.keys(seen).sort();
      return all.length <= EACH ? all : ["lowest", "mean", "highest"];
    }

    function columns(spec, k) {
      var each = labels[0] !== "lowest";
      var data = [samples.map(function (s) { return s.t; })];
      labels.forEach(function (label, i) {
        data.push(samples.map(function (s) {
          if (!each) return s.summary[k] ? s.summary[k][i] : null;
          var w = s.workers[label];
          return w ? spec.value(w) : null;
        }));
      });
      return data;
    }

    // Lowest, mean and highest of one measure over a sample's workers.
    function summarize(spec, workers) {
      var values = Object.keys(workers).map(function (id) { return spec.value(workers[id]); });
      if (!values.length) return null;
      var sum = values.reduce(function (a, b) { return a + b; }, 0);
      return [Math.min.apply(null, values), sum / values.length, Math.max.apply(null, values)];
    }

    function width() {
      return Math.max(280, Math.min(container.clientWidth || 800, 1400) - 8);
    }

    function build() {
      container.innerHTML = "";
      labels = lines();
      var grid = { stroke: cssVar("--grid", "#ddd"), width: 1 };
      var text = cssVar("--fg", "#222");
      charts = SPECS.map(function (spec, k) {
        var box = document.createElement("div");
        box.className = "chart";
        box.id = "chart-" + spec.id;
        container.appendChild(box);
        var opts = {
          title: spec.title,
          width: width(),
          height: 220,
          scales: { x: { time: true } },
          axes: [{ stroke: text, grid: grid, ticks: grid, space: 110 }, { stroke: text, grid: grid, ticks: grid, size: 60 }],
          series: [{}].concat(labels.map(function (label, i) {
            return { label: label, stroke: COLORS[i % COLORS.length], width: 2, points: { show: false } };
          })),
        };
        return { spec: spec, plot: new global.uPlot(opts, columns(spec, k), box) };
      });
    }

    return {
      // The workers as the latest message lists them, at unix time `t`.
      push: function (t, workers) {
        if (samples.length && samples[samples.length - 1].t >= t) return;
        var byId = {};
        workers.forEach(function (w) {
          if (w.state === "missing") return;
          byId[w.id] = { cpu_usage: w.cpu_usage, memory_usage: w.memory_usage };
          seen[w.id] = true;
        });
        var summary = SPECS.map(function (spec) { return summarize(spec, byId); });
        if (Object.keys(seen).length > EACH) {
          // Past EACH workers only the summaries are drawn: keep no more.
          if (!summarizedOnly) samples.forEach(function (s) { s.workers = {}; });
          summarizedOnly = true;
          byId = {};
        }
        samples.push({ t: t, workers: byId, summary: summary });
        if (samples.length > KEEP) samples.shift();
        if (!charts.length || lines().join("\n") !== labels.join("\n")) build();
        else charts.forEach(function (c, k) { c.plot.setData(columns(c.spec, k), true); });
        // What is drawn, for readers of the page's markup (and its tests).
        container.dataset.samples = String(samples.length);
        container.dataset.lines = labels.join(" ");
        var last = columns(SPECS[1], 1).slice(1).map(function (line) { return line[line.length - 1]; });
        container.dataset.memory = last.map(function (v) { return v === null ? "" : v.toFixed(1); }).join(" ");
      },
      resize: function () {
        charts.forEach(function (c) { c.plot.setSize({ width: width(), height: 220 }); });
      },
      lines: function () { return labels.slice(); },
      count: function () { return samples.length; },
    };
  }

  global.SwarmerWorkerCharts = { create: create };
})(window);
