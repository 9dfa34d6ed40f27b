// Swarmer's three charts (requests/s with failures/s, response-time
// percentiles, users), drawn with uPlot. Shared by the web UI (live) and
// the HTML report (static). A point is
// [unix seconds, users, rps, fail/s, p50, p95, p99, avg] (see
// crates/report/src/live.rs, history_point).
(function (global) {
  "use strict";

  function cssVar(name, fallback) {
    var v = getComputedStyle(document.documentElement).getPropertyValue(name);
    return v && v.trim() ? v.trim() : fallback;
  }

  function axes() {
    var grid = { stroke: cssVar("--grid", "#ddd"), width: 1 };
    var text = cssVar("--fg", "#222");
    return [
      { stroke: text, grid: grid, ticks: grid, space: 110 },
      { stroke: text, grid: grid, ticks: grid, size: 60 },
    ];
  }

  var SPECS = [
    {
      id: "rps",
      title: "Total requests per second",
      series: [
        { label: "RPS", column: 2, color: "#2e7d32" },
        { label: "Failures/s", column: 3, color: "#c62828" },
      ],
    },
    {
      id: "response-times",
      title: "Response times (ms)",
      series: [
        { label: "50th percentile", column: 4, color: "#1565c0" },
        { label: "95th percentile", column: 5, color: "#ef6c00" },
        { label: "99th percentile", column: 6, color: "#6a1b9a" },
      ],
    },
    {
      id: "users",
      title: "Number of users",
      series: [{ label: "Users", column: 1, color: "#00838f" }],
    },
  ];

  function columns(points, spec) {
    var data = [points.map(function (p) { return p[0]; })];
    spec.series.forEach(function (s) {
      data.push(points.map(function (p) { return p[s.column]; }));
    });
    return data;
  }

  // Build the charts inside `container`; returns {push(point), reset(points), resize()}.
  function create(container, points) {
    points = (points || []).slice();
    var charts = [];
    function width() {
      return Math.max(280, Math.min(container.clientWidth || 800, 1400) - 8);
    }
    function build() {
      container.innerHTML = "";
      charts = SPECS.map(function (spec) {
        var box = document.createElement("div");
        box.className = "chart";
        box.id = "chart-" + spec.id;
        container.appendChild(box);
        var opts = {
          title: spec.title,
          width: width(),
          height: 260,
          scales: { x: { time: true } },
          axes: axes(),
          series: [{}].concat(spec.series.map(function (s) {
            return { label: s.label, stroke: s.color, width: 2, points: { show: false } };
          })),
        };
        return { spec: spec, plot: new global.uPlot(opts, columns(points, spec), box) };
      });
    }
    build();
    return {
      push: function (point) {
        points.push(point);
        if (points.length > 86400) points.shift();
        charts.forEach(function (c) { c.plot.setData(columns(points, c.spec)); });
      },
      reset: function (newPoints) {
        points = (newPoints || []).slice();
        charts.forEach(function (c) { c.plot.setData(columns(points, c.spec)); });
      },
      resize: function () {
        charts.forEach(function (c) { c.plot.setSize({ width: width(), height: 260 }); });
      },
      rebuild: build,
      count: function () { return points.length; },
    };
  }

  global.SwarmerCharts = { create: create };
})(window);
