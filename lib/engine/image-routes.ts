import { ROUTE_SCOPES } from '../auth/scopes.ts';
import { InvalidArgumentError, RegistryNotAllowedError } from '../errors.ts';
import { parseFilters } from '../filters.ts';
import { listImageViews, resolveImage } from '../images.ts';
import { parsePlatform } from '../manifest.ts';
import { parsePullParams } from '../reference.ts';
import { json } from './http.ts';
import { filterImages, IMAGE_LIST_FILTERS, imageHistory, imageInspect } from './image-responses.ts';
import { pullThroughJob } from './job-pull.ts';
import { streamPull } from './pull-stream.ts';
import type { Route } from './router.ts';

export const imageRoutes: Route[] = [
  {
    method: 'POST',
    pattern: /^\/images\/create$/,
    scope: ROUTE_SCOPES['POST /images/create'],
    handler: async (request, _params, context) => {
      const query = request.query;
      if (query.get('fromSrc')) {
        throw new InvalidArgumentError('importing a root filesystem (fromSrc) is not supported');
      }
      const fromImage = query.get('fromImage');
      if (!fromImage) throw new InvalidArgumentError('fromImage is required');
      const ref = parsePullParams(fromImage, query.get('tag') ?? undefined);
      const platformText = query.get('platform');
      const platform = platformText ? parsePlatform(platformText) : undefined;
      const { deadline } = request;
      // A cache hit is answered at once, as on the Node server: a job would only add writes and
      // a worker start.
      if (
        deadline !== undefined &&
        context.jobs &&
        !(await context.pulls.isFreshInCache(ref, platform))
      ) {
        // Refused registries are refused here, with their status, not as a failed job.
        if (!context.registries.has(ref.registry)) throw new RegistryNotAllowedError(ref.registry);
        return pullThroughJob({ ...request, deadline }, ref, platform, context, context.jobs);
      }
      return streamPull((onProgress, closed) =>
        context.pulls.pull(ref, { platform, onProgress, signal: closed, door: 'engine' }),
      );
    },
  },
  {
    method: 'GET',
    pattern: /^\/images\/json$/,
    scope: ROUTE_SCOPES['GET /images/json'],
    handler: async (request, _params, context) => {
      const filters = parseFilters(request.query.get('filters'), IMAGE_LIST_FILTERS);
      const views = await listImageViews(context.catalog);
      const byName = new Map<string, (typeof views)[number]>();
      for (const name of [...(filters.get('before') ?? []), ...(filters.get('since') ?? [])]) {
        byName.set(name, await resolveImage(context.catalog, name));
      }
      return json(200, filterImages(views, filters, byName));
    },
  },
  {
    method: 'GET',
    pattern: /^\/images\/(.+)\/json$/,
    scope: ROUTE_SCOPES['GET /images/{name}/json'],
    handler: async (_request, [name], context) => {
      const view = await resolveImage(context.catalog, name!);
      return json(200, await imageInspect(view, context.blobs));
    },
  },
  {
    method: 'GET',
    pattern: /^\/images\/(.+)\/history$/,
    scope: ROUTE_SCOPES['GET /images/{name}/history'],
    handler: async (_request, [name], context) => {
      const view = await resolveImage(context.catalog, name!);
      return json(200, await imageHistory(view, context.blobs, context.catalog));
    },
  },
];
