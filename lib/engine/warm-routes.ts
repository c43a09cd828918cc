/**
 * `POST /cache/warm`: a CI step names the images its build will need, and the cache starts (or
 * joins) one pull job per image and platform, answering their ids at once. The pulls run where
 * jobs run (in process on the embedded server, the job queue on AWS); `GET /cache/jobs/{id}`
 * follows them. The list is checked whole before any job starts, so a bad entry starts nothing.
 */
import { ROUTE_SCOPES } from '../auth/scopes.ts';
import { ImageCacheError, InvalidArgumentError, NotFoundError } from '../errors.ts';
import { jobPath } from '../jobs/job-view.ts';
import type { Jobs } from '../jobs/jobs.ts';
import { startPullJob } from '../jobs/pull-job.ts';
import { formatPlatform, parsePlatform } from '../manifest.ts';
import type { Platform, Reference } from '../model.ts';
import { formatReference, parsePullParams } from '../reference.ts';
import type { EngineContext } from './context.ts';
import { json, readSmallBody } from './http.ts';
import type { Route } from './router.ts';

/** More than a build's base images: larger lists are split by the client. */
export const MAX_WARM_IMAGES = 500;
const MAX_WARM_BODY = 256 * 1024;
const STARTS_AT_ONCE = 16;
const SHAPE =
  'send {"images": ["nginx:1.27", {"reference": "redis:7", "platform": "linux/arm64"}]}';

interface WarmEntry {
  ref: Reference;
  platform: Platform | undefined;
}

export const warmRoutes: Route[] = [
  {
    method: 'POST',
    pattern: /^\/cache\/warm$/,
    scope: ROUTE_SCOPES['POST /cache/warm'],
    handler: async (request, _params, context) => {
      const entries = parseWarmList(await readSmallBody(request.body, MAX_WARM_BODY), context);
      const { jobs } = context;
      if (!jobs) throw new NotFoundError('this server runs no background jobs to warm with');
      // One job per image and platform; the same entry twice in a list joins one job anyway. A
      // few at a time, so a list of hundreds does not burst the job table (DynamoDB's capacity).
      const started = [];
      for (let i = 0; i < entries.length; i += STARTS_AT_ONCE) {
        const batch = entries.slice(i, i + STARTS_AT_ONCE);
        started.push(...(await Promise.all(batch.map((entry) => start(context, jobs, entry)))));
      }
      return json(202, { jobs: started });
    },
  },
];

async function start(context: EngineContext, jobs: Jobs, { ref, platform }: WarmEntry) {
  const job = await startPullJob(context, jobs, ref, platform);
  return {
    reference: formatReference(ref),
    ...(platform && { platform: formatPlatform(platform) }),
    id: job.id,
    url: jobPath(job.id),
  };
}

function parseWarmList(text: string, context: EngineContext): WarmEntry[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new InvalidArgumentError(`the body is not JSON: ${SHAPE}`);
  }
  const images = (value as { images?: unknown } | null)?.images;
  if (!Array.isArray(images) || images.length === 0) {
    throw new InvalidArgumentError(`"images" must be a non-empty list: ${SHAPE}`);
  }
  if (images.length > MAX_WARM_IMAGES) {
    throw new InvalidArgumentError(
      `"images" lists ${images.length} images, at most ${MAX_WARM_IMAGES} per request`,
    );
  }
  return images.map((item, index) => {
    try {
      return parseEntry(item, context);
    } catch (error) {
      // Which entry, so a list of hundreds can be fixed; the cause keeps its own words.
      if (!(error instanceof ImageCacheError)) throw error;
      throw new InvalidArgumentError(`images[${index}]: ${error.message}`);
    }
  });
}

function parseEntry(item: unknown, context: EngineContext): WarmEntry {
  const { reference, platform } = (
    typeof item === 'string' ? { reference: item } : (item ?? {})
  ) as { reference?: unknown; platform?: unknown };
  if (typeof reference !== 'string' || reference === '') {
    throw new InvalidArgumentError(`an image is a reference or {"reference", "platform"}`);
  }
  if (platform !== undefined && typeof platform !== 'string') {
    throw new InvalidArgumentError('"platform" must be a string such as linux/arm64');
  }
  const ref = parsePullParams(reference);
  if (!context.registries.has(ref.registry)) {
    throw new InvalidArgumentError(
      `registry ${ref.registry} is not allowed: add it to IMAGE_CACHE_REGISTRIES to cache its images`,
    );
  }
  return { ref, platform: platform ? parsePlatform(platform) : undefined };
}
