/**
 * A vitest reporter that fails the run when a test was skipped and nobody said it may be: a
 * skipWhen reason (or a `ctx.skip(note)`) not listed in test/allowed-skips.ts, or a skip with no
 * reason at all (`it.skip`, `skipIf`, `.only` elsewhere).
 *
 * Tests left out by a filter are also reported as skipped, with the same mode as `it.skip`.
 * Filters by file never load the others; a `-t` pattern is matched here the way the runner
 * matches it, so a test it left out is not judged; with a line filter (`file.ts:12`) the
 * reasonless skips of that file are not judged, only the reasoned ones.
 */
import type { Reporter, TestCase, TestModule, TestSpecification, Vitest } from 'vitest/node';
import { ALLOWED_SKIPS } from '../allowed-skips.ts';

export class SkipGuard implements Reporter {
  #namePattern: RegExp | undefined;
  #specs: readonly TestSpecification[] = [];
  readonly #allowed: ReadonlySet<string>;

  constructor(allowed: readonly string[] = ALLOWED_SKIPS) {
    this.#allowed = new Set(allowed);
  }

  onInit(vitest: Vitest): void {
    this.#namePattern = vitest.config.testNamePattern;
  }

  onTestRunStart(specifications: readonly TestSpecification[]): void {
    this.#specs = specifications;
  }

  onTestRunEnd(modules: readonly TestModule[]): void {
    const problems: string[] = [];
    for (const module of modules) {
      const spec = this.#specs.find((s) => s.moduleId === module.moduleId);
      const pattern = spec?.testNamePattern ?? this.#namePattern;
      const byLine = (spec?.testLines?.length ?? 0) > 0;
      for (const test of module.children.allTests('skipped')) {
        const problem = this.#judge(test, pattern, byLine);
        if (problem) problems.push(`${module.moduleId} > ${test.fullName}: ${problem}`);
      }
    }
    if (problems.length === 0) return;
    process.stderr.write(
      `\nSkip guard: ${problems.length} test(s) skipped without an allowed reason ` +
        `(list allowed reasons in test/allowed-skips.ts):\n${problems.map((p) => `  ${p}\n`).join('')}`,
    );
    process.exitCode = 1;
  }

  /** Why this skip fails the run, or undefined when it does not. */
  #judge(test: TestCase, pattern: RegExp | undefined, byLine: boolean): string | undefined {
    const result = test.result();
    const reason = test.meta().skipReason ?? (result.state === 'skipped' ? result.note : undefined);
    if (reason !== undefined) {
      if (pattern && !pattern.test(runnerName(test))) return undefined;
      return this.#allowed.has(reason) ? undefined : `skipped: ${reason}`;
    }
    if (byLine || (pattern && !pattern.test(runnerName(test)))) return undefined;
    return `skipped (${test.options.mode}) without a reason: use skipWhen`;
  }
}

/** The name `-t` is matched against: the suites and the test, space-separated, as the runner joins them. */
function runnerName(test: TestCase): string {
  const names = [test.name];
  for (let parent = test.parent; parent.type === 'suite'; parent = parent.parent) {
    names.unshift(parent.name);
  }
  return names.join(' ');
}
