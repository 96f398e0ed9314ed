// Open the novabox console page in headless Chromium, wait until the guest screen has
// arrived, save what the canvas shows as PNG, and check that keys and clicks are sent.
// Usage: node console_check.mjs URL OUT.png   (CHROMIUM=/path overrides the browser)
import { chromium } from "playwright-core";
import fs from "node:fs";

const [url, out] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 600 } });
  const sent = [];
  page.on("websocket", (ws) => {
    ws.on("framesent", (f) => sent.push(Buffer.from(f.payload)));
  });
  await page.goto(url);
  await page.waitForFunction(
    () => Number(document.body.dataset.updates || 0) > 0 && document.body.dataset.state === "normal",
    null,
    { timeout: 30000 },
  );
  await page.waitForTimeout(1000);
  const size = await page.evaluate(() => document.body.dataset.size);
  const dataUrl = await page.evaluate(() => document.getElementById("screen").toDataURL("image/png"));
  fs.writeFileSync(out, Buffer.from(dataUrl.split(",")[1], "base64"));
  await page.screenshot({ path: out.replace(/\.png$/, "-page.png") });
  // Typing and clicking reach the server as RFB messages.
  await page.click("#screen", { position: { x: 100, y: 50 } });
  await page.keyboard.press("KeyA");
  await page.waitForTimeout(500);
  const kinds = new Set(sent.map((b) => b[0]));
  const result = {
    size,
    keySent: kinds.has(4) || sent.some((b) => b[0] === 255 && b[1] === 0),
    pointerSent: kinds.has(5),
    status: await page.evaluate(() => document.getElementById("status").textContent),
  };
  console.log(JSON.stringify(result));
  if (!result.keySent || !result.pointerSent) process.exitCode = 1;
} finally {
  await browser.close();
}
