import { formatPlatform, normalizePlatform } from '../manifest.ts';
import type { Platform, Reference } from '../model.ts';
import type { Clock } from '../ports/clock.ts';
import type { JobStore } from '../ports/job-store.ts';
import { formatReference } from '../reference.ts';
import { type Jobs, startJob } from './jobs.ts';

/**
 * Creates or joins the pull job for a reference and platform (one however many ask, from either
 * door) and dispatches it when it is new.
 */
export function startPullJob(
  context: { jobStore: JobStore; clock: Clock },
  jobs: Jobs,
  ref: Reference,
  platform: Platform | undefined,
  /** Whose lookups the pull counts (see JobRequest); none for the registry door's fills. */
  door?: 'engine',
) {
  const reference = formatReference(ref);
  const platformText = platform ? formatPlatform(normalizePlatform(platform)) : undefined;
  return startJob(
    { jobStore: context.jobStore, redispatcher: jobs.redispatcher },
    {
      kind: 'pull',
      key: `pull|${reference}|${platformText ?? 'default'}`,
      request: {
        kind: 'pull',
        reference,
        ...(platformText && { platform: platformText }),
        ...(door && { door }),
      },
    },
  );
}
