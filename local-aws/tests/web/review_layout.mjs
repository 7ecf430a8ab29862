// The reviewer page's layout and keys in headless Chromium, with a long queue and the
// model's 19 labels. Started by local-aws/tests/local_review_page.rs with:
//   BASE_URL     the service's origin (http://127.0.0.1:PORT)
//   TOKEN        the page's access token
//   FIRST_FILE   the file name of the oldest frame (shown with it)
//   XSS_URL      a task UI template whose inline script, if it ever runs, sets
//                document.title to "xss-ran" (and reads the queue)
// Checks, failing with what it saw: `/?token=` lands on the page; on a 1440x900 screen
// the queue scrolls inside its panel and no entry sticks out of it sideways, the page
// does not scroll, and every label button
// shows without scrolling; the oldest frame's file name is shown; keys 1 then 7 pick
// label 17 and `/` + "husk" filters to and picks Siberian_husky; the template's script
// does not run on this origin; on a 390x844 phone nothing overflows sideways, the
// frame is on screen and the frame, the answer panel and the queue do not overlap.
// Prints {"seventeenth": LABEL, "filtered": LABEL}.
import { fail, withBrowser } from "./browser.mjs";

const base = process.env.BASE_URL;
const token = process.env.TOKEN;
const firstFile = process.env.FIRST_FILE;
const xssUrl = process.env.XSS_URL;

await withBrowser(base, { width: 1440, height: 900 }, async (page) => {
  await page.goto(`${base}/?token=${token}`);
  if (new URL(page.url()).pathname !== "/review") fail(`/?token= ended at ${page.url()}`);
  await page.waitForSelector("#queue-list li");
  await page.waitForFunction((f) => document.getElementById("meta").textContent.includes(f), firstFile)
    .catch(() => fail(`the frame's file name ${firstFile} is not shown`));

  const desk = await page.evaluate(() => {
    const q = document.querySelector(".queue");
    const panel = document.getElementById("panel");
    const r = q.getBoundingClientRect();
    return {
      items: document.querySelectorAll("#queue-list li").length,
      queueBottom: r.bottom,
      queueScrolls: q.scrollHeight > q.clientHeight,
      // Any queue entry wider than the panel (long names must be cut with an ellipsis).
      queueSideways: Math.max(...[...q.querySelectorAll("li")].map((li) => li.getBoundingClientRect().right)) - r.right,
      pageHeight: document.documentElement.scrollHeight,
      innerHeight: window.innerHeight,
      panelOverflow: panel.scrollHeight - panel.clientHeight,
      choices: document.querySelectorAll(".choice").length,
    };
  });
  if (desk.queueBottom > desk.innerHeight + 1 || desk.pageHeight > desk.innerHeight + 1) {
    fail(`the queue of ${desk.items} overflows: its panel ends at ${desk.queueBottom}px, the page is ${desk.pageHeight}px, the window ${desk.innerHeight}px`);
  }
  if (desk.queueSideways > 0) fail(`the queue's entries overflow its panel by ${desk.queueSideways}px sideways`);
  if (!desk.queueScrolls) fail(`the queue of ${desk.items} does not scroll inside its panel`);
  if (desk.choices < 20) fail(`only ${desk.choices} label buttons`);
  if (desk.panelOverflow > 1) fail(`the answer panel needs ${desk.panelOverflow}px of scrolling to show all ${desk.choices} labels`);

  const checked = () => page.locator('.choice[aria-checked="true"]').getAttribute("data-label");
  await page.keyboard.press("1");
  await page.keyboard.press("7");
  const seventeenth = await checked();
  await page.keyboard.press("/");
  await page.keyboard.type("husk");
  await page.keyboard.press("Enter");
  const filtered = await checked();
  const visible = await page.locator(".choice:visible").count();
  if (visible !== 1) fail(`the filter "husk" leaves ${visible} labels`);

  // The stored template, opened on this origin with the reviewer's cookie: refused,
  // shown as text or downloaded, its script must not run.
  const opened = await page.goto(xssUrl).then(() => "shown", (e) => {
    if (String(e).includes("Download is starting")) return "downloaded";
    throw e;
  });
  if (opened === "shown" && (await page.title()).startsWith("xss-ran")) {
    fail("the task UI template's script ran on the reviewer page's origin");
  }

  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${base}/review`);
  await page.waitForSelector("#queue-list li");
  await page.waitForFunction(() => {
    const img = document.getElementById("frame");
    return img.complete && img.naturalWidth > 0;
  });
  const phone = await page.evaluate(() => {
    const box = (el) => el.getBoundingClientRect();
    const [stage, panel, queue, frame] = [".stage", "#panel", ".queue", "#frame"].map((s) => box(document.querySelector(s)));
    const overlap = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
    return {
      scrollWidth: document.documentElement.scrollWidth,
      innerWidth: window.innerWidth,
      frame: { width: frame.width, right: frame.right, top: frame.top },
      overlaps: [overlap(stage, panel), overlap(stage, queue), overlap(panel, queue)],
    };
  });
  if (phone.scrollWidth > phone.innerWidth) fail(`on a phone the page is ${phone.scrollWidth}px wide in a ${phone.innerWidth}px screen`);
  if (!(phone.frame.width > 100) || phone.frame.right > phone.innerWidth || phone.frame.top > 844) {
    fail(`on a phone the frame is not on screen: ${JSON.stringify(phone.frame)}`);
  }
  if (phone.overlaps.some(Boolean)) fail(`on a phone the frame, panel and queue overlap: ${phone.overlaps}`);
  await page.locator("#submit").scrollIntoViewIfNeeded();
  if (!(await page.locator("#submit").isVisible())) fail("on a phone the submit button cannot be reached");
  return { seventeenth, filtered };
});
