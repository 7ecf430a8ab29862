// Drives the reviewer page in headless Chromium (Debian's /usr/bin/chromium, through
// playwright-core, which downloads no browser). Started by
// local-aws/tests/local_review_page.rs with:
//   REVIEW_URL   the page URL with its token (as local-aws prints it)
//   PLAN         JSON list of steps, one per frame in queue order:
//                {"click": "<label>"} | {"key": "<digit|n>"} | {"skip": true}
//   SCREENSHOT   where to save the screenshot of the page mid-review (PNG)
// Prints one JSON line: [{"loop": "<name>", "label": "<label>"|null}, ...] and exits 0,
// or prints the failure and exits 1.
import { fail, withBrowser } from "./browser.mjs";

const url = process.env.REVIEW_URL;
const plan = JSON.parse(process.env.PLAN || "[]");
const screenshot = process.env.SCREENSHOT;

await withBrowser(url, { width: 1440, height: 900 }, async (page) => {
  await page.goto(url);
  if (new URL(page.url()).search.includes("token=")) fail("the token stayed in the address bar");
  await page.waitForSelector("#queue-list li");
  const initial = await page.locator("#queue-list li").count();
  if (initial < plan.length) fail(`queue shows ${initial} frames, the plan has ${plan.length}`);

  const results = [];
  for (const [i, step] of plan.entries()) {
    const current = await page.locator("#queue-list li.current").getAttribute("data-name");
    if (!current) fail(`step ${i}: no current frame`);
    // The full-size frame is loaded before anyone answers.
    await page.waitForFunction(() => {
      const img = document.getElementById("frame");
      return img.complete && img.naturalWidth > 0;
    });
    let label = null;
    if (step.click) {
      await page.locator(".choice", { hasText: step.click }).first().click();
      label = step.click;
    } else if (step.key) {
      await page.keyboard.press(step.key);
      label = await page.locator('.choice[aria-checked="true"]').getAttribute("data-label");
      if (!label) fail(`step ${i}: key ${step.key} selected nothing`);
    }
    if (screenshot && i === 1) {
      await page.screenshot({ path: screenshot });
    }
    if (step.skip) {
      await page.keyboard.press("s");
    } else if (step.click) {
      await page.locator("#submit").click();
    } else {
      await page.keyboard.press("Enter");
    }
    // The answered (or skipped) frame leaves the queue.
    await page.waitForFunction(
      (name) => ![...document.querySelectorAll("#queue-list li")].some((li) => li.dataset.name === name),
      current,
    );
    results.push({ loop: current, label });
  }

  const answered = plan.filter((s) => !s.skip).length;
  const skipped = plan.filter((s) => s.skip).length;
  await page.waitForFunction(
    ([a, s]) =>
      document.getElementById("done").textContent === String(a) &&
      document.getElementById("left").textContent === String(s),
    [answered, skipped],
  );
  const note = await page.locator("#skipped-note").textContent();
  if (skipped && !note.includes(`${skipped} skipped`)) fail(`progress does not mention the skip: ${note}`);
  if (screenshot) {
    await page.screenshot({ path: screenshot.replace(/\.png$/, "-done.png") });
  }
  return results;
});
