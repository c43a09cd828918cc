/**
 * Headless Chromium (Debian's `chromium`, installed by scripts/setup.mjs --test) driven by
 * playwright-core, for the dashboard tests: one browser per file, a page that records every
 * console error and uncaught exception, and screenshots under test-artifacts/.
 */
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
export const ARTIFACTS = resolve(import.meta.dirname, '../../test-artifacts');

export function launchChromium(): Promise<Browser> {
  // Tests run as root, where Chromium's sandbox cannot start.
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
}

/** A console error or page error, with the resource it was about when there was one. */
export interface PageProblem {
  text: string;
  url: string;
}

/** A fresh context (own sessionStorage) and page; `problems` fills as the page runs. */
export async function openPage(browser: Browser): Promise<{ page: Page; problems: PageProblem[] }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const problems: PageProblem[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error') {
      problems.push({ text: message.text(), url: message.location().url });
    }
  });
  page.on('pageerror', (error) => problems.push({ text: error.message, url: '' }));
  return { page, problems };
}

/** Writes a full-page screenshot under test-artifacts/ and prints where. */
export async function screenshot(page: Page, name: string): Promise<string> {
  await mkdir(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  console.log(`screenshot: ${path}`);
  return path;
}
