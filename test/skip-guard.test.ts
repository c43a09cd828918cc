import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * The skip guard (test/support/skip-guard.ts, wired in vitest.config.ts) judged by running the
 * project's vitest configuration in a child over test/fixtures/skip-guard/, whose tests are
 * skipped in each way the guard knows: for a reason test/allowed-skips.ts does not list, with no
 * reason at all, and at run time with a note.
 */
const root = fileURLToPath(new URL('..', import.meta.url));

function vitest(...args: string[]) {
  const child = spawnSync(
    process.execPath,
    [
      'node_modules/vitest/vitest.mjs',
      'run',
      '--config',
      'test/fixtures/skip-guard/vitest.config.ts',
      ...args,
    ],
    { cwd: root, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } },
  );
  return { status: child.status, output: child.stdout + child.stderr };
}

describe('the skip guard', () => {
  it('fails a run with an unlisted skip, naming every skipped test and why', () => {
    const run = vitest();
    expect(run.status).toBe(1);
    expect(run.output).toMatch(/1 passed \| 3 skipped/);
    expect(run.output).toContain('Skip guard: 3 test(s) skipped without an allowed reason');
    expect(run.output).toContain(
      'is skipped for an unlisted reason: skipped: a reason nobody allowed',
    );
    expect(run.output).toContain('is skipped without a reason: skipped (skip) without a reason');
    expect(run.output).toContain('skips itself at run time: skipped: a run-time reason nobody');
  });

  it('leaves alone the tests a -t filter left out', () => {
    const run = vitest('-t', 'passes');
    expect(run.output).toMatch(/1 passed \| 3 skipped/);
    expect(run.output).not.toContain('Skip guard');
    expect(run.status).toBe(0);
  });

  it('still judges a skipped test the -t filter picked', () => {
    const run = vitest('-t', 'unlisted reason');
    expect(run.status).toBe(1);
    expect(run.output).toContain('Skip guard: 1 test(s) skipped');
  });
});
