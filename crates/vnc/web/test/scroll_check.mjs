// Open the console page in headless Chromium, save the canvas once the first picture has
// arrived, then (after a line on stdin: the server's picture has scrolled) wait for the
// next updates and save the canvas again; print how many CopyRect rectangles it applied.
// Usage: node scroll_check.mjs URL FIRST.png SECOND.png   (CHROMIUM=/path overrides)
import { chromium } from "playwright-core";
import fs from "node:fs";
import readline from "node:readline";

const [url, first, second] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
const save = async (page, out) => {
  const dataUrl = await page.evaluate(() => document.getElementById("screen").toDataURL("image/png"));
  fs.writeFileSync(out, Buffer.from(dataUrl.split(",")[1], "base64"));
};
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 600 } });
  await page.goto(url);
  await page.waitForFunction(
    () => Number(document.body.dataset.updates || 0) > 0 && document.body.dataset.state === "normal",
    null,
    { timeout: 30000 },
  );
  await page.waitForTimeout(500);
  await save(page, first);
  console.log("READY");
  const rl = readline.createInterface({ input: process.stdin });
  await new Promise((resolve) => rl.once("line", resolve));
  rl.close();
  await page.waitForFunction(() => Number(document.body.dataset.copies || 0) > 0, null, { timeout: 30000 });
  await page.waitForTimeout(1000);
  await save(page, second);
  console.log(JSON.stringify({ copies: await page.evaluate(() => Number(document.body.dataset.copies || 0)) }));
} finally {
  await browser.close();
}
