import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The layers, as ggcr's depcheck keeps its packages apart: every import in lib/ and functions/
 * is read (type-only imports too: they couple as much) and checked against who may use whom.
 *
 * - ports (lib/ports/) speak domain types only: no other module but digest, model and errors.
 * - the domain (the rest of lib/ but the doors, fronts, adapters, configuration and the
 *   composition root) imports no door (engine, mirror), front (lambda, cli, server), adapter
 *   (adapters, registry), composition or SDK.
 * - a route file never imports another route file; the router brings them together.
 * - fronts (functions/, lib/server.ts) import the router, the composition, configuration, HTTP
 *   shapes and their own adapters (lib/lambda/, request limits), nothing of the domain.
 *
 * And no hidden inputs: only configuration (lib/config.ts, lib/config/) and the entry points
 * that hand it the environment read `process.env`; only the composition roots keep state at
 * module level (a `let`, or a Map/Set/WeakMap that starts empty and fills as the process runs).
 */

const ROOT = resolve(import.meta.dirname, '..');

function files(dir: string): string[] {
  return readdirSync(join(ROOT, dir)).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(join(ROOT, path)).isDirectory()) return files(path);
    return path.endsWith('.ts') ? [path] : [];
  });
}

const IMPORT =
  /(?:^|\n)\s*(?:import|export)\b[^'";]*?\bfrom\s+'([^']+)'|\bimport\(\s*'([^']+)'\s*\)|(?:^|\n)\s*import\s+'([^']+)'/g;

/** `[file, target]` pairs: a relative target as a repository path, a package as written. */
function importsOf(file: string): [string, string][] {
  const source = readFileSync(join(ROOT, file), 'utf8');
  const found: [string, string][] = [];
  for (const match of source.matchAll(IMPORT)) {
    const spec = (match[1] ?? match[2] ?? match[3])!;
    const target = spec.startsWith('.') ? relative(ROOT, resolve(ROOT, dirname(file), spec)) : spec;
    found.push([file, target]);
  }
  return found;
}

const ALL = [...files('lib'), ...files('functions')].flatMap(importsOf);

const DOORS = /^lib\/(engine|mirror)\//;
const FRONTS = /^(functions\/|lib\/(lambda|cli)\/|lib\/server\.ts$)/;
const ADAPTERS = /^lib\/(adapters|registry)\//;
const ROOTS = /^lib\/(composition|config|request-limits)\.ts$|^lib\/config\//;
const SDKS = /^(@aws-sdk\/|aws-lambda$|undici$|better-sqlite3$|aws-cdk-lib)/;

function isDomain(file: string): boolean {
  return (
    file.startsWith('lib/') &&
    !DOORS.test(file) &&
    !FRONTS.test(file) &&
    !ADAPTERS.test(file) &&
    !ROOTS.test(file) &&
    !file.startsWith('lib/ports/')
  );
}

/** Every import `rule` forbids, as `file -> target`. */
function violations(
  imports: [string, string][],
  rule: (file: string, target: string) => boolean,
): string[] {
  return imports.filter(([file, target]) => rule(file, target)).map(([f, t]) => `${f} -> ${t}`);
}

const RULES: Record<string, (file: string, target: string) => boolean> = {
  'ports import only domain types': (file, target) =>
    file.startsWith('lib/ports/') &&
    !target.startsWith('node:') &&
    !target.startsWith('lib/ports/') &&
    !/^lib\/(digest|model|errors)\.ts$/.test(target),
  'the domain imports no door, front, adapter, composition or SDK': (file, target) =>
    isDomain(file) &&
    (DOORS.test(target) ||
      FRONTS.test(target) ||
      ADAPTERS.test(target) ||
      ROOTS.test(target) ||
      SDKS.test(target)),
  'route files do not import route files': (file, target) =>
    /-routes\.ts$/.test(file) && /-routes\.ts$/.test(target),
  'fronts import the router, the composition and their adapters only': (file, target) =>
    /^(functions\/|lib\/server\.ts$)/.test(file) &&
    !target.startsWith('node:') &&
    target !== 'aws-lambda' &&
    !target.startsWith('lib/lambda/') &&
    !/^lib\/(composition|config|request-limits|errors)\.ts$/.test(target) &&
    !/^lib\/engine\/(router|http)\.ts$/.test(target),
};

const SOURCES = [...files('lib'), ...files('functions')].map(
  (file) => [file, readFileSync(join(ROOT, file), 'utf8')] as const,
);

/** Who may read the environment: configuration, and the entry points that pass it there. */
const READS_ENV = /^(lib\/config\.ts|lib\/config\/.*|lib\/lambda\/runtime\.ts|lib\/cli\/main\.ts)$/;
/** Where process-wide state may live: the composition roots (the Lambda one caches its own). */
const HOLDS_STATE = /^(lib\/composition\.ts|lib\/lambda\/runtime\.ts)$/;
const ENV_READ = /\bprocess\.env\b/;
const MODULE_STATE =
  /^(?:export )?(?:let \w|const \w+(?::[^=]+)? = new (?:Map|Set|WeakMap|WeakSet)(?:<.*>)?\(\))/m;

function hiddenInputs(sources: readonly (readonly [string, string])[]): string[] {
  return sources.flatMap(([file, text]) => [
    ...(ENV_READ.test(text) && !READS_ENV.test(file) ? [`${file} reads process.env`] : []),
    ...(MODULE_STATE.test(text) && !HOLDS_STATE.test(file)
      ? [`${file} keeps module-level state: ${MODULE_STATE.exec(text)![0]}`]
      : []),
  ]);
}

describe('layers', () => {
  it('reads the imports of every module', () => {
    // A reader that found nothing would pass every rule.
    expect(ALL.length).toBeGreaterThan(500);
    expect(ALL).toContainEqual(['lib/engine/router.ts', 'lib/mirror/registry-door.ts']);
  });

  it.each(Object.entries(RULES))('%s', (_name, rule) => {
    expect(violations(ALL, rule)).toEqual([]);
  });

  it('only configuration reads the environment; only composition roots keep module state', () => {
    expect(SOURCES.length).toBeGreaterThan(100);
    expect(hiddenInputs(SOURCES)).toEqual([]);
  });

  it.each([
    ['lib/load/tar-reader.ts', 'const limits = loadLimitsFromEnv(process.env);'],
    ['lib/engine/load-routes.ts', 'const partSize = Number(process.env.X);'],
    ['lib/gc.ts', 'const busyByStore = new WeakMap<object, Set<string>>();'],
    ['lib/jobs/jobs.ts', 'let redispatched: Map<string, number> | undefined;'],
    ['lib/errors.ts', 'export const logged = new WeakSet();'],
  ])('would refuse %s holding `%s`', (file, text) => {
    expect(hiddenInputs([[file, text]])).toHaveLength(1);
  });

  it.each([
    ['lib/config/load-limits.ts', 'parseLoadLimits(process.env)'],
    ['lib/registry/retry.ts', "const TIMEOUT_CODES = new Set(['ETIMEDOUT']);"],
  ])('allows %s holding `%s`', (file, text) => {
    expect(hiddenInputs([[file, text]])).toEqual([]);
  });

  it.each([
    ['lib/pull.ts', 'lib/engine/http.ts'],
    ['lib/ports/catalog.ts', 'lib/auth/scopes.ts'],
    ['lib/gc.ts', '@aws-sdk/client-s3'],
    ['lib/engine/gc-routes.ts', 'lib/engine/removal-routes.ts'],
    ['functions/prune.ts', 'lib/retention.ts'],
    ['lib/server.ts', 'lib/gc.ts'],
  ])('would refuse %s importing %s', (file, target) => {
    const refused = Object.values(RULES).some((rule) => rule(file, target));
    expect(refused).toBe(true);
  });
});
