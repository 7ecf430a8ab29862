// What the reviewer-page scripts share: headless Chromium (Debian's /usr/bin/chromium
// through playwright-core, which downloads no browser) in a throwaway profile, a page
// that records requests leaving its origin and script errors, and the exit protocol:
// one JSON line on stdout and exit 0, or the failure on stderr and exit 1.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

export const STEP_TIMEOUT = 15000;

export function fail(msg) {
  throw new Error(msg);
}

// Runs `body(page, context, checks)` against `url`'s origin; `checks()` fails the run
// on foreign requests or page errors seen so far. Prints body's result as JSON.
export async function withBrowser(url, viewport, body) {
  const profile = mkdtempSync(join(tmpdir(), "ea2i-chromium-"));
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      headless: true,
      args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-gpu"],
      viewport,
      timeout: 30000,
    });
    const page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(STEP_TIMEOUT);
    // Nothing may come from anywhere but the page's own origin.
    const origin = new URL(url).origin;
    const foreign = [];
    page.on("request", (r) => {
      if (!r.url().startsWith(origin) && !r.url().startsWith("data:")) foreign.push(r.url());
    });
    const pageErrors = [];
    page.on("pageerror", (e) => pageErrors.push(String(e)));
    const checks = () => {
      if (foreign.length) fail(`requests left the page's origin: ${foreign.join(", ")}`);
      if (pageErrors.length) fail(`script errors on the page: ${pageErrors.join("; ")}`);
    };
    const result = await body(page, context, checks);
    checks();
    console.log(JSON.stringify(result));
  } catch (e) {
    console.error(`reviewer page test failed: ${e.stack || e}`);
    process.exitCode = 1;
  } finally {
    if (context) await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  }
}
