// The web UI in a real browser (Debian's chromium, driven by
// playwright-core) against real processes: the demo target and swarmer.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const { execFileSync } = require("node:child_process");
const h = require("./harness");

let browser;
let target;

test.before(async () => {
  target = await h.startTarget();
  browser = await h.launchBrowser();
});

test.after(async () => {
  if (browser) await browser.close();
  h.stop(target);
});

async function number(page, selector) {
  const text = await page.locator(selector).innerText();
  return Number(text.replace(/[^0-9.]/g, ""));
}

test("a test is started from the form, watched live, edited, stopped and downloaded", async () => {
  const swarmer = await h.startSwarmer(target.url);
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1366, height: 900 } });
  const page = await context.newPage();
  try {
    await page.goto(swarmer.url);
    await page.locator("#start-form").waitFor();
    await page.fill("#f-users", "6");
    await page.fill("#f-rate", "20");
    await page.click("#f-start");

    // The header and the table follow the test live.
    await page.waitForFunction(() => document.getElementById("h-users").textContent === "6", null, { timeout: 15000 });
    await page.waitForFunction(() => document.getElementById("h-state").textContent === "RUNNING");
    await page.locator("#stats-table tbody tr").first().waitFor();
    const before = await number(page, "#stats-table tfoot td:nth-child(3)");
    await page.waitForTimeout(2500);
    const after = await number(page, "#stats-table tfoot td:nth-child(3)");
    assert.ok(after > before, `requests grew: ${before} -> ${after}`);
    const names = await page.locator("#stats-table tbody td:nth-child(2)").allInnerTexts();
    assert.ok(names.includes("/login"), `names in the table: ${names}`);

    // Charts are drawn and move.
    await page.click("button[data-tab=charts]");
    await page.locator("#chart-rps canvas").waitFor();
    await page.waitForTimeout(1500);
    const first = await page.locator("#chart-rps").screenshot();
    await page.waitForTimeout(2500);
    const second = await page.locator("#chart-rps").screenshot();
    assert.ok(!first.equals(second), "the requests/s chart changed as points arrived");
    assert.ok((await h.distinctColours(page, second)) > 20, "the chart is not blank");
    assert.equal(await page.locator("#charts canvas").count(), 3);
    await page.screenshot({ fullPage: true, path: path.join(h.artifactsDir(), "charts.png") });
    await page.click("button[data-tab=stats]");
    await page.screenshot({ path: path.join(h.artifactsDir(), "statistics.png") });

    // Edit the user count while running.
    await page.click("#btn-edit");
    await page.fill("#e-users", "3");
    await page.click("#e-apply");
    await page.waitForFunction(() => document.getElementById("h-users").textContent === "3", null, { timeout: 15000 });

    // Stop, then download the CSV.
    await page.click("#btn-stop");
    await page.waitForFunction(() => document.getElementById("h-state").textContent === "STOPPED", null, { timeout: 15000 });
    await page.click("button[data-tab=downloads]");
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#dl-requests")]);
    const csv = fs.readFileSync(await download.path(), "utf8");
    assert.match(csv, /^Type,Name,Request Count,Failure Count,Median Response Time/);
    assert.match(csv, /\r\n,Aggregated,\d+/);
    assert.match(download.suggestedFilename(), /^Locust_.*_requests\.csv$/);

    const shot = await page.screenshot({ fullPage: true, path: path.join(h.artifactsDir(), "dashboard.png") });
    assert.ok((await h.distinctColours(page, shot)) > 50, "the screenshot is not blank");

    // New test brings the form back, in a dialog.
    await page.click("#btn-new");
    await page.locator("#new-dialog #start-form").waitFor();
  } finally {
    await context.close();
    h.stop(swarmer);
  }
});

test("a second test in the same process shows, downloads and charts only itself", async () => {
  // Each test's requests carry its number (counted by a test_start listener).
  const dir = h.tempDir();
  const plan = path.join(dir, "plan.lua");
  fs.writeFileSync(plan, [
    "local swarmer = require('swarmer')",
    "swarmer.events.test_start:add_listener(function() swarmer.shared.test = (swarmer.shared.test or 0) + 1 end)",
    "local function tag() return 'test-' .. swarmer.shared.test end",
    "swarmer.user('U', { wait_time = swarmer.constant(0.05), tasks = {",
    "  swarmer.task('page', 4, function(self) self.client:get('/', { name = tag() .. ' page' }) end),",
    "  swarmer.task('fail', 1, function(self) self.client:get('/status/500', { name = tag() .. ' fail' }) end),",
    "  swarmer.task('boom', 1, function(self) error('boom in ' .. tag()) end),",
    "} })",
  ].join("\n"));
  const swarmer = await h.startSwarmer(target.url, ["-f", plan]);
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1440, height: 900 } });
  const page = await context.newPage();
  const names = () => page.locator("#stats-table tbody td:nth-child(2)").allInnerTexts();
  try {
    await page.goto(swarmer.url);
    await page.fill("#f-users", "3");
    await page.fill("#f-rate", "50");
    await page.click("#f-start");
    await page.waitForFunction(() => document.getElementById("h-state").textContent === "RUNNING", null, { timeout: 15000 });
    // Both badges count live while the Statistics tab shows.
    await page.waitForFunction(() => document.getElementById("n-failures").textContent !== ""
      && document.getElementById("n-exceptions").textContent !== "", null, { timeout: 15000 });
    // The table fits a 1440 px screen: no sideways scrolling.
    const fits = await page.evaluate(() => {
      const table = document.getElementById("stats-table");
      return table.scrollWidth <= table.parentElement.clientWidth;
    });
    assert.ok(fits, "the statistics table fits 1440 px");
    await page.click("button[data-tab=failures]");
    const seen = await page.locator("#failures-table tbody tr").first().locator("td").allInnerTexts();
    assert.match(seen[4], /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/, "first seen: " + seen.join(" | "));
    assert.match(seen[5], /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/, "last seen: " + seen.join(" | "));
    await page.click("button[data-tab=stats]");
    await page.click("#btn-stop");
    await page.waitForFunction(() => document.getElementById("h-state").textContent === "STOPPED", null, { timeout: 15000 });

    // "New test" is a dialog: cancelled, the first test's results stay.
    await page.click("#btn-new");
    await page.locator("#new-dialog #start-form").waitFor();
    await page.click("#f-cancel");
    await page.waitForFunction(() => !document.getElementById("new-dialog").open);
    assert.ok((await names()).includes("test-1 page"), "the last results stay on screen");

    // The second test.
    await page.click("#btn-new");
    await page.fill("#f-users", "2");
    await page.click("#f-start");
    const secondStart = Date.now() / 1000;
    await page.waitForFunction(() => document.getElementById("h-state").textContent === "RUNNING", null, { timeout: 15000 });
    await page.waitForFunction(() => [...document.querySelectorAll("#stats-table tbody td:nth-child(2)")]
      .some((td) => td.textContent === "test-2 page"), null, { timeout: 15000 });
    await page.waitForTimeout(2500);
    await page.click("#btn-stop");
    await page.waitForFunction(() => document.getElementById("h-state").textContent === "STOPPED", null, { timeout: 15000 });
    const shown = await names();
    assert.ok(shown.length > 0 && shown.every((n) => n.startsWith("test-2")), "only the second test: " + shown);

    // Its downloads and report hold only it.
    await page.click("button[data-tab=downloads]");
    for (const link of ["#dl-requests", "#dl-failures", "#dl-exceptions", "#dl-json", "#dl-report"]) {
      const [download] = await Promise.all([page.waitForEvent("download"), page.click(link)]);
      const text = fs.readFileSync(await download.path(), "utf8");
      assert.ok(text.includes("test-2"), `${link} has the second test`);
      assert.ok(!text.includes("test-1"), `${link} has nothing of the first test`);
    }
    const history = await (await fetch(swarmer.url + "/stats/history")).json();
    assert.ok(history.length > 0 && history.every((p) => p[0] >= secondStart - 1.5), "the charts' points: " + history.length);

    // Charts: zoom in by dragging, reset the zoom, save one as a PNG.
    await page.click("button[data-tab=charts]");
    const chart = page.locator("#chart-rps");
    const over = chart.locator(".u-over");
    await over.waitFor();
    await page.waitForTimeout(1200); // the stopped test's last point is in
    const plot = chart.locator("canvas");
    const whole = await plot.screenshot();
    const box = await over.boundingBox();
    await page.mouse.move(box.x + box.width * 0.4, box.y + box.height / 2);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.6, box.y + box.height / 2, { steps: 5 });
    await page.mouse.up();
    await page.mouse.move(0, 0);
    const zoomed = await plot.screenshot();
    assert.ok(!zoomed.equals(whole), "dragging zoomed in");
    await chart.locator(".reset-zoom").click();
    await page.mouse.move(0, 0);
    const reset = await plot.screenshot();
    assert.ok(reset.equals(whole), "Reset zoom shows the whole test again");
    const [png] = await Promise.all([page.waitForEvent("download"), chart.locator(".save-image").click()]);
    assert.equal(png.suggestedFilename(), "swarmer-rps.png");
    const bytes = fs.readFileSync(await png.path());
    assert.equal(bytes.subarray(1, 4).toString(), "PNG");
    assert.ok((await h.distinctColours(page, bytes)) > 5, "the image has the chart");

    // Reset clears the badges and the charts' history too.
    await page.click("#btn-reset");
    await page.waitForFunction(() => document.getElementById("n-failures").textContent === ""
      && document.getElementById("n-exceptions").textContent === "");
    const afterReset = await (await fetch(swarmer.url + "/stats/history")).json();
    assert.equal(afterReset.length, 0, "no chart points after a reset");
  } finally {
    await context.close();
    h.stop(swarmer);
  }
});

test("load phases show in the header and the charts; Edit pauses them and says so", async () => {
  const dir = h.tempDir();
  const phases = path.join(dir, "phases.toml");
  fs.writeFileSync(phases, [
    "[[phases]]", "name = \"warm\"", "duration = \"3s\"", "users = 2", "spawn_rate = 50",
    "[[phases]]", "name = \"peak\"", "duration = \"60s\"", "users = 5", "spawn_rate = 50",
  ].join("\n"));
  const plan = path.join(__dirname, "..", "fixtures", "plans", "phases.lua");
  const swarmer = await h.startSwarmer(target.url, ["-f", plan, "--phases", phases]);
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const page = await context.newPage();
  const header = () => page.locator("#h-shape").innerText();
  try {
    await page.goto(swarmer.url);
    await page.locator("#start-form").waitFor();
    assert.match(await page.locator("#f-shape-note").innerText(), /load shape phases\.toml sets the number of users/);
    await page.fill("#f-users", "40");
    await page.click("#f-start");
    // The phases, not the form's 40 users, drive the test.
    await page.waitForFunction(() => /^warm \(1\) · \d+ s left$/.test(document.getElementById("h-shape").textContent),
      null, { timeout: 15000 });
    await page.waitForFunction(() => document.getElementById("h-users").textContent === "2");
    await page.waitForFunction(() => /^peak \(2\) · \d+ s left$/.test(document.getElementById("h-shape").textContent),
      null, { timeout: 15000 });
    await page.waitForFunction(() => document.getElementById("h-users").textContent === "5", null, { timeout: 15000 });
    const left = Number((await header()).match(/(\d+) s left/)[1]);
    assert.ok(left > 40 && left <= 60, `time left in the phase: ${left}`);

    // Each phase's start is marked in the charts, and listed under them.
    await page.click("button[data-tab=charts]");
    await page.locator("#chart-rps canvas").waitFor();
    await page.waitForFunction(() => document.querySelectorAll("#charts .step-mark").length === 2, null, { timeout: 10000 });
    const marks = await page.locator("#charts .step-mark").allInnerTexts();
    assert.match(marks[0], /^warm from /);
    assert.match(marks[1], /^peak from /);
    await page.screenshot({ fullPage: true, path: path.join(h.artifactsDir(), "phases.png") });

    // Editing the load pauses the phases: the dialog says so first.
    await page.click("#btn-edit");
    assert.ok(await page.locator("#edit-shape-note").isVisible(), "the Edit dialog warns that the phases pause");
    assert.match(await page.locator("#edit-shape-note").innerText(), /phases\.toml/);
    await page.fill("#e-users", "3");
    await page.click("#e-apply");
    await page.waitForFunction(() => document.getElementById("h-users").textContent === "3", null, { timeout: 15000 });
    await page.waitForFunction(() => /paused/.test(document.getElementById("h-shape").textContent), null, { timeout: 5000 });
    await page.click("#btn-edit");
    assert.ok(!(await page.locator("#edit-shape-note").isVisible()), "no warning once paused");
    await page.click("#e-cancel");

    await page.click("#btn-stop");
    await page.waitForFunction(() => document.getElementById("h-state").textContent === "STOPPED", null, { timeout: 15000 });
    assert.ok(await page.locator("#h-shape-box").isHidden(), "no phase once the test is over");
  } finally {
    await context.close();
    h.stop(swarmer);
  }
});

test("the run's thresholds show their verdicts live under the statistics and in the report", async () => {
  const swarmer = await h.startSwarmer(target.url, [
    "--threshold", "p95<10s", "--threshold", "[/nowhere] requests>=1", "--threshold", "max<10s over 2s",
  ]);
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const page = await context.newPage();
  try {
    await page.goto(swarmer.url);
    await page.locator("#start-form").waitFor();
    assert.ok(await page.locator("#thresholds-box").isHidden(), "no verdicts before a test");
    await page.fill("#f-users", "2");
    await page.click("#f-start");
    await page.waitForFunction(() => document.querySelectorAll("#thresholds-table tbody tr").length === 3,
      null, { timeout: 15000 });
    // The window threshold is judged once a whole window has passed.
    await page.waitForFunction(() => /^[0-9.]+ms$/.test(
      document.querySelector("#thresholds-table tbody tr:nth-child(3) td:nth-child(2)").textContent),
    null, { timeout: 15000 });
    const rows = await page.locator("#thresholds-table tbody tr").evaluateAll((trs) =>
      trs.map((tr) => Array.from(tr.cells).map((td) => td.textContent)));
    assert.equal(rows[0][0], "p95<10s");
    assert.equal(rows[0][2], "passed");
    assert.deepEqual(rows[1], ["[/nowhere] requests>=1", "no requests", "FAILED"]);
    assert.equal(rows[2][2], "passed");
    assert.equal(await page.locator("#thresholds-summary").innerText(), "2 of 3 passed");
    await page.screenshot({ fullPage: true, path: path.join(h.artifactsDir(), "thresholds.png") });
    const report = await (await fetch(swarmer.url + "/stats/report")).text();
    assert.match(report, /<h2>Thresholds<\/h2>/);
    assert.match(report, /\[\/nowhere\] requests&gt;=1<\/td><td>no requests/);
    await page.click("#btn-stop");
  } finally {
    await context.close();
    h.stop(swarmer);
  }
});

test("the test's notes show above the statistics: a memory guard that sheds users says so", async () => {
  // A limit below what the process already holds: the guard sheds at once.
  const swarmer = await h.startSwarmer(target.url, ["--memory-limit", "16MiB", "--lua-memory-limit", "none"]);
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const page = await context.newPage();
  try {
    await page.goto(swarmer.url);
    await page.locator("#start-form").waitFor();
    await page.fill("#f-users", "4");
    await page.click("#f-start");
    await page.locator("#notes-box").waitFor({ state: "visible", timeout: 15000 });
    await page.waitForFunction(() => /Memory guard: .* of --memory-limit 16 MiB; shed the (newest user|\d+ newest users) \(\d+ left; the guard adds none back\).* s into the test\)/
      .test(document.getElementById("notes-list").textContent), null, { timeout: 15000 });
    await page.waitForFunction(() => document.getElementById("h-users").textContent === "0", null, { timeout: 15000 });
    await page.screenshot({ fullPage: true, path: path.join(h.artifactsDir(), "notes.png") });
    await page.click("#btn-stop");
  } finally {
    await context.close();
    h.stop(swarmer);
  }
});

test("an arrival rate is started from the form and shows its iterations, corrected times and dropped chart", async () => {
  const swarmer = await h.startSwarmer(target.url, []);
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const page = await context.newPage();
  try {
    await page.goto(swarmer.url);
    await page.locator("#start-form").waitFor();
    assert.ok(await page.locator("#arrival-box").isHidden(), "nothing about arrival before a test");
    await page.fill("#f-users", "2");
    await page.click("#f-arrival summary");
    await page.fill("#f-arrival-rate", "50/s");
    await page.fill("#f-max-users", "4");
    await page.click("#f-start");
    // (A shard descheduled on a busy machine may drop one: the open model
    // counts it rather than delaying it, so only the line's form is checked.)
    await page.waitForFunction(() => /Iterations: [1-9][0-9,]* started, [0-9,]+ dropped/.test(
      document.getElementById("iterations-line").textContent), null, { timeout: 15000 });
    assert.match(await page.locator("#arrival-rate").innerText(), /^50\/s \(users: 2 pre-allocated, at most 4\)$/);
    const corrected = await page.locator("#corrected-table tbody tr").evaluateAll((trs) =>
      trs.map((tr) => Array.from(tr.cells).map((td) => td.textContent)));
    assert.ok(corrected.length >= 2, "a row per name and the Aggregated row");
    assert.equal(corrected[corrected.length - 1][1], "Aggregated");
    await page.click("button[data-tab=charts]");
    await page.waitForFunction(() => Array.from(document.querySelectorAll("#chart-rps .u-legend .u-label"))
      .some((l) => l.textContent === "Dropped iterations/s"), null, { timeout: 15000 });
    // The response-time chart adds the corrected percentiles beside the measured ones.
    await page.waitForFunction(() => {
      const labels = Array.from(document.querySelectorAll("#chart-response-times .u-legend .u-label"))
        .map((l) => l.textContent);
      return labels.includes("99th percentile") && labels.includes("95th from intended start")
        && labels.includes("99th from intended start");
    }, null, { timeout: 15000 });
    await page.screenshot({ fullPage: true, path: path.join(h.artifactsDir(), "arrival.png") });
    const report = await (await fetch(swarmer.url + "/stats/report")).text();
    assert.match(report, /from the intended start/);
    // Edit keeps it an arrival-rate test, at the new rate.
    await page.click("#btn-edit");
    assert.equal(await page.inputValue("#e-arrival-rate"), "50/s");
    await page.fill("#e-arrival-rate", "80");
    await page.click("#e-apply");
    await page.waitForFunction(() => document.getElementById("arrival-rate").textContent.startsWith("80/s"),
      null, { timeout: 15000 });
    // A bad rate is refused, naming the field.
    await page.click("#btn-stop");
    await page.waitForFunction(() => document.getElementById("h-state").textContent === "STOPPED", null, { timeout: 15000 });
    const refused = await fetch(swarmer.url + "/swarm", {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded", Origin: swarmer.url },
      body: "user_count=2&spawn_rate=1&arrival_rate=fast",
    });
    const answer = await refused.json();
    assert.equal(answer.success, false);
    assert.match(answer.message, /arrival rate 'fast'/);
  } finally {
    await context.close();
    h.stop(swarmer);
  }
});

test("a plan's shapes are a list in the start form, and the one picked drives the test", async () => {
  const plan = path.join(__dirname, "..", "fixtures", "plans", "shape_phases.lua");
  const swarmer = await h.startSwarmer(target.url, ["-f", plan, "--shape", "flat"]);
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const page = await context.newPage();
  try {
    await page.goto(swarmer.url);
    const shape = page.locator("#f-options select[name=shape]");
    await shape.waitFor();
    assert.equal(await shape.inputValue(), "flat", "the --shape given is picked");
    assert.deepEqual(await shape.locator("option").allInnerTexts(), ["phases", "flat"]);
    await shape.selectOption("phases");
    await page.click("#f-start");
    // "phases" starts 4 Weekday users ("flat" holds 2), then ends the test.
    await page.waitForFunction(() => document.getElementById("h-users").textContent === "4", null, { timeout: 15000 });
    assert.equal(await page.locator("#h-shape").getAttribute("title"), "Load shape phases");
    await page.waitForFunction(() => document.getElementById("h-state").textContent === "STOPPED", null, { timeout: 15000 });
  } finally {
    await context.close();
    h.stop(swarmer);
  }
});

test("with --web-login the UI asks for a password and the API refuses strangers", async () => {
  const swarmer = await h.startSwarmer(target.url, ["--web-login"], { SWARMER_WEB_AUTH: "alice:s3cret" });
  const context = await browser.newContext();
  const page = await context.newPage();
  try {
    const anonymous = await fetch(swarmer.url + "/stats/requests");
    assert.equal(anonymous.status, 401);
    const basic = await fetch(swarmer.url + "/stats/requests", {
      headers: { Authorization: "Basic " + Buffer.from("alice:s3cret").toString("base64") },
    });
    assert.equal(basic.status, 200);

    await page.goto(swarmer.url);
    assert.match(page.url(), /\/login$/);
    await page.fill("#username", "alice");
    await page.fill("#password", "wrong");
    await page.click("#login");
    await page.locator(".error").waitFor();
    await page.fill("#username", "alice");
    await page.fill("#password", "s3cret");
    await page.click("#login");
    await page.locator("#start-form").waitFor();
    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name === "swarmer_session");
    assert.ok(session && session.httpOnly && session.sameSite === "Strict", JSON.stringify(cookies));
    // Logged in, the live stream works through the cookie.
    await page.waitForFunction(() => document.getElementById("h-state").textContent === "READY");
  } finally {
    await context.close();
    h.stop(swarmer);
  }
});

test("the page fits a phone and has a dark theme", async () => {
  const swarmer = await h.startSwarmer(target.url, ["--autostart", "-u", "2", "-r", "10"]);
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true });
  const page = await context.newPage();
  try {
    await page.goto(swarmer.url);
    await page.waitForFunction(() => document.getElementById("h-state").textContent === "RUNNING", null, { timeout: 15000 });
    await page.click("#btn-theme");
    const theme = await page.evaluate(() => document.documentElement.getAttribute("data-theme"));
    const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    assert.ok(theme === "dark" || theme === "light");
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `the page is wider than the phone by ${overflow}px`);
    const shot = await page.screenshot({ path: path.join(h.artifactsDir(), "phone.png") });
    assert.ok((await h.distinctColours(page, shot)) > 20);
    await page.click("#btn-theme");
    const other = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    assert.notEqual(background, other, "the theme button switches colours");
  } finally {
    await context.close();
    h.stop(swarmer);
  }
});

test("thousands of names stay readable: filter, pages, sorting; plan options are in the form", async () => {
  const plan = path.join(__dirname, "fixtures", "many_names.lua");
  const swarmer = await h.startProcess(
    ["-f", plan, "-H", target.url, "--web-host", "127.0.0.1", "-P", "0"], "Starting web interface at");
  swarmer.child.removeAllListeners("exit");
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  try {
    await page.goto(swarmer.url);
    const option = page.locator("#f-options input[name=names]");
    await option.waitFor();
    assert.equal(await option.inputValue(), "1500");
    await option.fill("1200");
    await page.fill("#f-users", "20");
    await page.fill("#f-rate", "100");
    await page.click("#f-start");
    await page.waitForFunction(() => /^1200 of 1200 names$/.test(document.getElementById("stats-count").textContent),
      null, { timeout: 60000 });
    assert.equal(await page.locator("#stats-table tbody tr").count(), 100, "one page of rows is drawn");
    assert.equal(await page.locator("#page-info").innerText(), "page 1 of 12");
    await page.click("#page-next");
    assert.equal(await page.locator("#stats-table tbody tr td:nth-child(2)").first().innerText(), "/item/0100");
    await page.fill("#stats-search", "/item/07");
    await page.waitForFunction(() => document.getElementById("stats-count").textContent.startsWith("100 of"));
    assert.equal(await page.locator("#page-info").innerText(), "page 1 of 1");
    await page.fill("#stats-search", "");
    await page.click("#stats-table th[data-key=name]");
    await page.click("#stats-table th[data-key=name]");
    assert.equal(await page.locator("#stats-table tbody tr td:nth-child(2)").first().innerText(), "/item/1199");
  } finally {
    await context.close();
    h.stop(swarmer);
  }
});

test("a master shows its workers: header count and the Workers tab", async () => {
  const swarmer = await h.startSwarmer(target.url, ["--processes", "2", "--expect-workers", "2", "--autostart", "-u", "4", "-r", "20"]);
  const context = await browser.newContext();
  const page = await context.newPage();
  try {
    await page.goto(swarmer.url);
    await page.waitForFunction(() => document.getElementById("h-workers").textContent === "2", null, { timeout: 20000 });
    assert.equal(await page.locator("#h-workers-box").isVisible(), true);
    await page.click("#tab-workers-button");
    await page.waitForFunction(() => document.querySelectorAll("#workers-table tbody tr").length === 2);
    const states = await page.locator("#workers-table tbody td:nth-child(2)").allInnerTexts();
    await page.waitForFunction(() => Array.from(document.querySelectorAll("#workers-table tbody td:nth-child(3)"))
      .reduce((sum, td) => sum + Number(td.textContent), 0) === 4, null, { timeout: 15000 });
    assert.ok(states.every((s) => ["ready", "spawning", "running"].includes(s)), states.join(","));
    // Under the table, each worker's CPU and memory over time: a line each.
    await page.waitForFunction(() => Number(document.getElementById("worker-charts").dataset.samples) >= 3, null, { timeout: 15000 });
    const lines = (await page.locator("#worker-charts").getAttribute("data-lines")).split(" ");
    const ids = await page.locator("#workers-table tbody td:nth-child(1)").allInnerTexts();
    assert.deepEqual(lines, [...ids].sort());
    const memory = (await page.locator("#worker-charts").getAttribute("data-memory")).split(" ").map(Number);
    assert.ok(memory.length === 2 && memory.every((mib) => mib > 1), memory.join(","));
    assert.equal(await page.locator("#chart-worker-cpu canvas").count(), 1);
    assert.equal(await page.locator("#chart-worker-memory canvas").count(), 1);
    assert.ok((await page.locator("#chart-worker-cpu").innerText()).includes("CPU per worker"));
    // The Charts tab (and the report) add the workers' lowest, mean and highest.
    await page.click("button[data-tab=charts]");
    await page.waitForSelector("#chart-workers-cpu canvas", { timeout: 15000 });
    assert.ok((await page.locator("#chart-workers-memory").innerText()).includes("Workers' memory (MiB)"));
  } finally {
    await context.close();
    h.stop(swarmer);
  }
});

test("a worker that cannot run the plan shows why in the Workers tab", async () => {
  // Of two workers, the first to load the plan (in its process VM) takes
  // the marker file and runs; the other finds it gone and cannot run the plan.
  const dir = h.tempDir();
  const marker = path.join(dir, "marker");
  fs.writeFileSync(marker, "");
  const plan = path.join(dir, "plan.lua");
  fs.writeFileSync(plan, [
    "local swarmer = require('swarmer')",
    "if swarmer.runner.role == 'worker' and swarmer.runner.process and not os.remove(" + JSON.stringify(marker) + ") then",
    "  error('this plan refuses workers')",
    "end",
    "swarmer.user('U', { wait_time = swarmer.constant(0.1), tasks = { function(self) self.client:get('/') end } })",
  ].join("\n"));
  const swarmer = await h.startSwarmer(target.url, ["-f", plan, "--processes", "2", "--autostart", "-u", "2", "-r", "10"]);
  const context = await browser.newContext();
  const page = await context.newPage();
  try {
    await page.goto(swarmer.url);
    await page.waitForFunction(() => !document.getElementById("tab-workers-button").hidden, null, { timeout: 20000 });
    await page.click("#tab-workers-button");
    await page.waitForFunction(() => document.querySelector("#workers-table tbody")
      .textContent.includes("this plan refuses workers"), null, { timeout: 20000 });
    const states = await page.locator("#workers-table tbody td:nth-child(2)").allInnerTexts();
    assert.ok(states.some((s) => s.startsWith("missing: cannot run the plan")), states.join(" | "));
  } finally {
    await context.close();
    h.stop(swarmer);
  }
});

test("the HTML report opens offline with every name and its charts", async () => {
  const dir = h.tempDir();
  const report = path.join(dir, "report.html");
  const json = path.join(dir, "stats");
  execFileSync(h.BIN, [
    "-f", "builtin:seed", "-H", target.url, "--headless", "-u", "5", "-r", "10", "-t", "4s",
    "--html", report, "--json-file", json, "--only-summary", "-L", "ERROR",
  ], { stdio: ["ignore", "ignore", "inherit"] });
  const names = JSON.parse(fs.readFileSync(json + ".json", "utf8")).map((e) => e.name);
  assert.ok(names.length >= 2);
  const context = await browser.newContext({ offline: true });
  const page = await context.newPage();
  const requested = [];
  await context.route("**/*", (route) => {
    if (route.request().url().startsWith("file:")) return route.continue();
    requested.push(route.request().url());
    return route.abort();
  });
  try {
    await page.goto("file://" + report);
    await page.locator("#charts canvas").first().waitFor();
    assert.equal(await page.locator("#charts canvas").count(), 3);
    await page.screenshot({ fullPage: true, path: path.join(h.artifactsDir(), "report.png") });
    const tableNames = await page.locator("#requests tbody td:nth-child(2)").allInnerTexts();
    for (const name of names) assert.ok(tableNames.includes(name), `${name} in the report`);
    assert.deepEqual(requested, [], "the report loads nothing from the network");
    const shot = await page.locator("#chart-rps").screenshot();
    assert.ok((await h.distinctColours(page, shot)) > 20, "the chart is drawn");
  } finally {
    await context.close();
  }
});
