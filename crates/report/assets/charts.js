// Swarmer's three charts (requests/s with failures/s, response-time
// percentiles, users), drawn with uPlot. Shared by the web UI (live) and
// the HTML report (static). A point is
// [unix seconds, users, rps, fail/s, p50, p95, p99, avg, ...] (see
// crates/report/src/live.rs, history_point). A chart whose series all
// show only once seen (the workers' CPU and memory) is left out until then.
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

  // A chart of the lowest, mean and highest of a figure over the nodes,
  // in columns `first` to `first + 2`, drawn once a point has them.
  function summary(id, title, first) {
    var colors = ["#2e7d32", "#1565c0", "#c62828"];
    return {
      id: id,
      title: title,
      series: ["Lowest", "Mean", "Highest"].map(function (label, i) {
        return { label: label, column: first + i, color: colors[i], whenSeen: true };
      }),
    };
  }

  var SPECS = [
    {
      id: "rps",
      title: "Total requests per second",
      series: [
        { label: "RPS", column: 2, color: "#2e7d32" },
        { label: "Failures/s", column: 3, color: "#c62828" },
        // Only once an arrival-rate test has drawn a point of it.
        { label: "Dropped iterations/s", column: 8, color: "#ff8f00", whenSeen: true },
      ],
    },
    {
      id: "response-times",
      title: "Response times (ms)",
      series: [
        { label: "50th percentile", column: 4, color: "#1565c0" },
        { label: "95th percentile", column: 5, color: "#ef6c00" },
        { label: "99th percentile", column: 6, color: "#6a1b9a" },
        // Only once requests with a schedule (arrival rate, pacing) drew
        // a point: their times from the intended start.
        { label: "95th from intended start", column: 9, color: "#ad1457", whenSeen: true },
        { label: "99th from intended start", column: 10, color: "#4e342e", whenSeen: true },
      ],
    },
    {
      id: "users",
      title: "Number of users",
      series: [{ label: "Users", column: 1, color: "#00838f" }],
    },
    // On a master: its workers' CPU and memory (lowest, mean, highest).
    summary("workers-cpu", "Workers' CPU (% of one core)", 11),
    summary("workers-memory", "Workers' memory (MiB)", 14),
  ];

  // A column some point has a value in.
  function seen(points, column) {
    return points.some(function (p) { return p[column] !== null && p[column] !== undefined; });
  }

  function shown(spec, points) {
    return spec.series.filter(function (s) { return !s.whenSeen || seen(points, s.column); });
  }

  function columns(points, spec) {
    var data = [points.map(function (p) { return p[0]; })];
    shown(spec, points).forEach(function (s) {
      data.push(points.map(function (p) { return p[s.column]; }));
    });
    return data;
  }

  // The chart as a PNG: its title, plot and legend's series names on the
  // page's background, saved as `swarmer-ID.png`.
  function saveImage(chart) {
    var plot = chart.plot.ctx.canvas;
    var ratio = plot.width / (chart.plot.width || plot.width);
    var out = document.createElement("canvas");
    var titleHeight = Math.round(28 * ratio);
    out.width = plot.width;
    out.height = plot.height + titleHeight;
    var ctx = out.getContext("2d");
    ctx.fillStyle = cssVar("--panel", "#fff");
    ctx.fillRect(0, 0, out.width, out.height);
    ctx.fillStyle = cssVar("--fg", "#222");
    ctx.font = "bold " + Math.round(15 * ratio) + "px sans-serif";
    ctx.textBaseline = "middle";
    var x = 8 * ratio;
    ctx.fillText(chart.spec.title, x, titleHeight / 2);
    x += ctx.measureText(chart.spec.title).width + 16 * ratio;
    ctx.font = Math.round(12 * ratio) + "px sans-serif";
    chart.shown.forEach(function (s) {
      ctx.fillStyle = s.color;
      ctx.fillRect(x, titleHeight / 2 - 5 * ratio, 10 * ratio, 10 * ratio);
      ctx.fillStyle = cssVar("--fg", "#222");
      ctx.fillText(s.label, x + 14 * ratio, titleHeight / 2);
      x += ctx.measureText(s.label).width + 30 * ratio;
    });
    ctx.drawImage(plot, 0, titleHeight);
    var link = document.createElement("a");
    link.download = "swarmer-" + chart.spec.id + ".png";
    link.href = out.toDataURL("image/png");
    document.body.appendChild(link);
    link.click();
    link.remove();
  }

  // Where each phase (step of a load shape) began: a dashed line across
  // every chart, named at its top. `marks` is [[unix seconds, name], ...].
  function drawMarks(u, marks) {
    if (!marks.length) return;
    var ctx = u.ctx;
    var ratio = u.bbox.width / (u.width || u.bbox.width) || 1;
    ctx.save();
    ctx.strokeStyle = cssVar("--fg", "#222");
    ctx.fillStyle = cssVar("--fg", "#222");
    ctx.globalAlpha = 0.7;
    ctx.setLineDash([5 * ratio, 4 * ratio]);
    ctx.lineWidth = ratio;
    ctx.font = Math.round(11 * ratio) + "px sans-serif";
    ctx.textBaseline = "top";
    marks.forEach(function (m) {
      var x = Math.round(u.valToPos(m[0], "x", true));
      if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
      ctx.beginPath();
      ctx.moveTo(x, u.bbox.top);
      ctx.lineTo(x, u.bbox.top + u.bbox.height);
      ctx.stroke();
      ctx.fillText(m[1], x + 3 * ratio, u.bbox.top + 2 * ratio);
    });
    ctx.restore();
  }

  // The marks as text under the charts ("weekday from 10:02:03"), for
  // readers without the picture.
  function listMarks(list, marks) {
    list.innerHTML = "";
    list.hidden = marks.length === 0;
    marks.forEach(function (m) {
      var item = document.createElement("li");
      item.className = "step-mark";
      item.textContent = m[1] + " from " + new Date(m[0] * 1000).toLocaleTimeString();
      list.appendChild(item);
    });
  }

  // Build the charts inside `container`; returns {push(point), reset(points), resize(), setMarks(marks)}.
  // A chart zoomed in (a drag across it) keeps its range while points
  // arrive, until "Reset zoom" or a double-click shows the whole test.
  function create(container, points, marks) {
    points = (points || []).slice();
    marks = (marks || []).slice();
    var charts = [];
    var markList = null;
    function width() {
      return Math.max(280, Math.min(container.clientWidth || 800, 1400) - 8);
    }
    function resetZoom(chart) {
      chart.zoomed = false;
      chart.plot.setData(columns(points, chart.spec), true);
    }
    function button(box, label, action) {
      var b = document.createElement("button");
      b.type = "button";
      b.textContent = label;
      b.addEventListener("click", action);
      box.appendChild(b);
      return b;
    }
    function build() {
      container.innerHTML = "";
      charts = SPECS.filter(function (spec) { return shown(spec, points).length > 0; }).map(function (spec) {
        var box = document.createElement("div");
        box.className = "chart";
        box.id = "chart-" + spec.id;
        container.appendChild(box);
        var tools = document.createElement("div");
        tools.className = "chart-tools";
        box.appendChild(tools);
        var chart = { spec: spec, zoomed: false, shown: shown(spec, points) };
        var opts = {
          title: spec.title,
          width: width(),
          height: 260,
          scales: { x: { time: true } },
          axes: axes(),
          series: [{}].concat(chart.shown.map(function (s) {
            return { label: s.label, stroke: s.color, width: 2, points: { show: false } };
          })),
          cursor: {
            bind: {
              dblclick: function () { return function () { resetZoom(chart); return null; }; },
            },
          },
          hooks: {
            // Zoomed in: the x scale shows less than the data's span.
            draw: [function (u) { drawMarks(u, marks); }],
            setScale: [function (u, key) {
              var t = u.data[0];
              if (key !== "x" || t.length < 2) return;
              chart.zoomed = u.scales.x.min > t[0] + 0.5 || u.scales.x.max < t[t.length - 1] - 0.5;
            }],
          },
        };
        chart.plot = new global.uPlot(opts, columns(points, spec), box);
        button(tools, "Reset zoom", function () { resetZoom(chart); }).className = "reset-zoom";
        button(tools, "Save as image", function () { saveImage(chart); }).className = "save-image";
        return chart;
      });
      markList = document.createElement("ul");
      markList.className = "step-marks";
      container.appendChild(markList);
      listMarks(markList, marks);
    }
    // A series that shows once seen (dropped iterations) needs new plots.
    function seriesChanged() {
      var drawn = SPECS.filter(function (spec) { return shown(spec, points).length > 0; }).length;
      return drawn !== charts.length ||
        charts.some(function (c) { return c.shown.length !== shown(c.spec, points).length; });
    }
    build();
    return {
      push: function (point) {
        points.push(point);
        if (points.length > 86400) points.shift();
        if (seriesChanged()) { build(); return; }
        charts.forEach(function (c) { c.plot.setData(columns(points, c.spec), !c.zoomed); });
      },
      reset: function (newPoints) {
        points = (newPoints || []).slice();
        if (seriesChanged()) { build(); return; }
        charts.forEach(function (c) { c.zoomed = false; c.plot.setData(columns(points, c.spec), true); });
      },
      setMarks: function (newMarks) {
        newMarks = (newMarks || []).slice();
        if (JSON.stringify(newMarks) === JSON.stringify(marks)) return;
        marks = newMarks;
        listMarks(markList, marks);
        charts.forEach(function (c) { c.plot.redraw(false, false); });
      },
      marks: function () { return marks.slice(); },
      zoomed: function () { return charts.some(function (c) { return c.zoomed; }); },
      resize: function () {
        charts.forEach(function (c) { c.plot.setSize({ width: width(), height: 260 }); });
      },
      rebuild: build,
      count: function () { return points.length; },
    };
  }

  global.SwarmerCharts = { create: create };
})(window);
