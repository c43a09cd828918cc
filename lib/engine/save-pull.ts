/**
 * `GET /images/get?pull=missing`: before the save, pull each name the cache cannot serve as
 * fresh, so one call gives a CI job any image as a tarball. Freshness is the rule `docker pull`
 * through the cache follows (PullService.isFreshInCache: a tag checked less than the TTL ago);
 * a stale tag is pulled, which revalidates it with a manifest HEAD and fetches only what moved.
 */

import { InvalidArgumentError, RegistryNotAllowedError } from '../errors.ts';
import type { Jobs } from '../jobs/jobs.ts';
import { startPullJob } from '../jobs/pull-job.ts';
import type { Reference } from '../model.ts';
import type { JobRecord } from '../ports/job-store.ts';
import { looksLikeImageId, parseReference, repositoryName, withDefaultTag } from '../reference.ts';
import type { EngineContext } from './context.ts';
import type { HttpRequest, HttpResponse } from './http.ts';
import { errorOfJob, followUntilDeadline, handedOver } from './job-deadline.ts';

/** Seconds a client is told to wait before asking again: a pull's layers take a while. */
const RETRY_AFTER_S = 5;

/** The `pull` query parameter: absent (save what is cached) or `missing`; anything else is a 400. */
export function pullsMissing(query: URLSearchParams): boolean {
  const value = query.get('pull');
  if (value === null) return false;
  if (value === 'missing') return true;
  throw new InvalidArgumentError(
    `pull must be "missing" (or absent), not ${JSON.stringify(value)}`,
  );
}

/**
 * Pulls what `names` lack; resolves to undefined once everything is stored, or to the answer
 * to give instead of the tarball (202 naming the pull job) when a front door's deadline came
 * first. An upstream that does not know a name fails here, so the save is a 404 before any byte.
 */
export async function pullMissing(
  request: HttpRequest,
  names: string[],
  context: EngineContext,
): Promise<HttpResponse | undefined> {
  const wanted: Reference[] = [];
  for (const name of new Set(names)) {
    const ref = await needsPull(context, name);
    if (!ref) continue;
    // Refused registries are refused with their status, before anything is pulled.
    if (!context.registries.has(ref.registry)) throw new RegistryNotAllowedError(ref.registry);
    wanted.push(ref);
  }
  const { deadline } = request;
  if (deadline !== undefined && context.jobs) {
    return pullThroughJobs({ ...request, deadline }, wanted, context, context.jobs);
  }
  // One after another: each pull already fetches its layers in parallel, within the setting.
  for (const ref of wanted) {
    await context.pulls.pull(ref, {
      door: 'engine',
      ...(request.signal && { signal: request.signal }),
    });
  }
  return undefined;
}

/**
 * The reference to pull for `name`, or undefined when the save can take it from the cache as
 * it is. Image IDs are never pulled (a registry has no such name): an unknown one stays a 404.
 */
async function needsPull(context: EngineContext, name: string): Promise<Reference | undefined> {
  let ref: Reference;
  try {
    ref = withDefaultTag(parseReference(name));
  } catch {
    return undefined;
  }
  const { catalog } = context;
  const repository = repositoryName(ref);
  if (ref.digest) {
    // Content addressed: stored means current.
    if (await catalog.getDigestRef(repository, ref.digest)) return undefined;
    return (await catalog.getManifest(ref.digest))?.image ? undefined : ref;
  }
  if (await context.pulls.isFreshInCache(ref)) return undefined;
  if (!(await catalog.getTag(repository, ref.tag!)) && looksLikeImageId(name)) return undefined;
  return ref;
}

/**
 * Behind a deadline (Lambda) each pull runs as its job (joined, not repeated, by concurrent
 * saves and pulls); the request waits for them in turn. If one is still running when the
 * deadline nears, the answer is the 202 a redirect save's export gives: the job, its Location,
 * and Retry-After; the same request once the job ended finds the image cached.
 */
async function pullThroughJobs(
  request: HttpRequest & { deadline: number },
  refs: Reference[],
  context: EngineContext,
  jobs: Jobs,
): Promise<HttpResponse | undefined> {
  const started: JobRecord[] = [];
  for (const ref of refs) started.push(await startPullJob(context, jobs, ref, undefined, 'engine'));
  for (const job of started) {
    const last = await followUntilDeadline(request, context.jobStore, jobs, job);
    if (last.status === 'failed') throw errorOfJob(last.error);
    if (last.status !== 'succeeded') return handedOver(last, RETRY_AFTER_S);
  }
  return undefined;
}
