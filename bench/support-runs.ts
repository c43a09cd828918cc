/**
 * The frame the registry benchmarks (pull, save, mirror) share: the image generated and pushed
 * to a fresh docker-registry before anything is timed, everything started stopped afterwards,
 * and the runs of the compared tools taken in turn.
 */
import { type RegistryServer, startRegistry } from '../test/support/registry-server.ts';
import {
  type BenchImage,
  type BenchImageOptions,
  benchImage,
  cleanupStack,
  log,
  MiB,
  machineLines,
  pushBenchImage,
  requireSkopeo,
} from './support.ts';

/** Where the registry benchmarks push their image. */
export const BENCH_REPOSITORY = 'library/bench';
export const BENCH_TAG = '1';

export interface BenchSetup {
  registry: RegistryServer;
  image: BenchImage;
  /** What the report says about this machine. */
  machine: string[];
  cleanups: ReturnType<typeof cleanupStack>;
}

/**
 * Checks skopeo when it takes part, describes the machine, generates (or reuses) the image and
 * pushes it as `repository:tag`; `body` runs the cases, and everything pushed on `cleanups` is
 * stopped after it, also when it fails or a signal arrives.
 */
export async function withBenchRegistry(
  options: BenchImageOptions & { skopeo: boolean },
  push: { repository: string; tag: string; label?: string },
  body: (setup: BenchSetup) => Promise<void>,
): Promise<void> {
  if (options.skopeo) await requireSkopeo();
  const machine = await machineLines();
  const image = await benchImage(options);
  const cleanups = cleanupStack();
  try {
    log('starting docker-registry ...');
    const registry = await startRegistry();
    cleanups.push(() => registry.stop());
    log(`registry at ${registry.url}`);
    await pushBenchImage(registry, image, push.repository, push.tag, push.label);
    await body({ registry, image, machine, cleanups });
  } finally {
    await cleanups.run();
  }
}

/**
 * Runs every tool once per round, `runs` rounds (a, b, a, b, ...): neither tool gets all the
 * warm page-cache runs. Logs each run and `describe`'s summary of its result.
 */
export async function alternateRuns<T extends string, R>(
  tools: readonly T[],
  runs: number,
  one: (tool: T, run: number) => Promise<R>,
  describe: (result: R, tool: T) => string,
): Promise<Map<T, R[]>> {
  const results = new Map<T, R[]>(tools.map((tool) => [tool, []]));
  for (let run = 1; run <= runs; run++) {
    for (const tool of tools) {
      log(`run ${run}/${runs}: ${tool} ...`);
      const result = await one(tool, run);
      log(`  ${describe(result, tool)}`);
      results.get(tool)?.push(result);
    }
  }
  return results;
}

/** `, peak RSS 12.3 MiB` for a run's log line, or nothing when it was not measured. */
export function peakRssNote(bytes: number | undefined): string {
  return bytes === undefined ? '' : `, peak RSS ${(bytes / MiB).toFixed(1)} MiB`;
}
