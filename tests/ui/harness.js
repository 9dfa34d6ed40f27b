// Starts the real processes the browser tests need (the demo target and
// swarmer with its web UI, both on 127.0.0.1) and Debian's chromium.
"use strict";

const { spawn } = require("node:child_process");
const path = require("node:path");
const fs = require("node:fs");
const os = require("node:os");
const { chromium } = require("playwright-core");

const ROOT = path.resolve(__dirname, "..", "..");
const BIN = process.env.SWARMER_BIN || path.join(ROOT, "target", "debug", "swarmer");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

// Start `swarmer args...`; resolve with the first URL its output prints
// after `marker`.
function startProcess(args, marker, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, args, { env: Object.assign({}, process.env, env || {}), stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    const timer = setTimeout(() => { child.kill("SIGKILL"); reject(new Error("timed out waiting for " + marker + ":\n" + output)); }, 20000);
    const onData = (chunk) => {
      output += chunk.toString();
      const at = output.indexOf(marker);
      if (at >= 0) {
        const match = output.slice(at).match(/https?:\/\/[^\s)]+/);
        if (match) { clearTimeout(timer); resolve({ child, url: match[0], output: () => output }); }
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("exit", (code) => { clearTimeout(timer); reject(new Error(`swarmer ${args.join(" ")} exited with ${code}:\n${output}`)); });
  });
}

async function startTarget() {
  return startProcess(["target", "--bind", "127.0.0.1:0"], "Demo target listening on");
}

// swarmer with its web UI on a free port; `extra` adds flags.
async function startSwarmer(targetUrl, extra, env) {
  const args = ["-f", "builtin:seed", "-H", targetUrl, "--web-host", "127.0.0.1", "-P", "0"].concat(extra || []);
  const proc = await startProcess(args, "Starting web interface at", env);
  proc.child.removeAllListeners("exit");
  return proc;
}

async function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--no-first-run", "--disable-quic", "--disable-sync",
    ],
  });
}

// Number of distinct colours in a PNG screenshot, counted by the browser.
async function distinctColours(page, png) {
  const data = "data:image/png;base64," + png.toString("base64");
  return page.evaluate(async (src) => {
    const img = new Image();
    img.src = src;
    await img.decode();
    const canvas = document.createElement("canvas");
    canvas.width = img.width; canvas.height = img.height;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const pixels = ctx.getImageData(0, 0, img.width, img.height).data;
    const seen = new Set();
    for (let i = 0; i < pixels.length; i += 4 * 7) {
      seen.add((pixels[i] << 16) | (pixels[i + 1] << 8) | pixels[i + 2]);
      if (seen.size > 5000) break;
    }
    return seen.size;
  }, data);
}

function stop(proc) {
  if (proc && proc.child.exitCode === null) proc.child.kill("SIGKILL");
}

function artifactsDir() {
  const dir = path.join(__dirname, "artifacts");
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

function tempDir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), "swarmer-ui-"));
}

module.exports = { startTarget, startSwarmer, startProcess, launchBrowser, distinctColours, stop, artifactsDir, tempDir, BIN };
