/**
 * The rest of the image life cycle in Docker's words: `docker tag`, `docker rmi` and
 * `docker image prune`, plus the cache's pins (what Docker has no word for lives under /cache).
 */
import { ROUTE_SCOPES } from '../auth/scopes.ts';
import { collectFreed } from '../gc.ts';
import { listPinViews, pinImage, unpinImage } from '../pins.ts';
import { pruneImages } from '../prune.ts';
import { removeImage } from '../removal/remove-image.ts';
import { tagImage } from '../removal/tag-image.ts';
import { boolQuery, json } from './http.ts';
import type { Route } from './router.ts';

export const removalRoutes: Route[] = [
  {
    method: 'POST',
    pattern: /^\/images\/prune$/,
    scope: ROUTE_SCOPES['POST /images/prune'],
    handler: async (request, _params, context) =>
      json(
        200,
        await pruneImages(
          context.catalog,
          request.query.get('filters'),
          collectFreed(context),
          context.clock.now(),
        ),
      ),
  },
  {
    method: 'POST',
    pattern: /^\/images\/(.+)\/tag$/,
    scope: ROUTE_SCOPES['POST /images/{name}/tag'],
    handler: async (request, [name], context) => {
      await tagImage(
        context.catalog,
        name!,
        {
          repo: request.query.get('repo') ?? undefined,
          tag: request.query.get('tag') ?? undefined,
        },
        context.clock.now(),
      );
      return { status: 201 };
    },
  },
  {
    method: 'DELETE',
    pattern: /^\/images\/(.+)$/,
    scope: ROUTE_SCOPES['DELETE /images/{name}'],
    handler: async (request, [name], context) => {
      const outcome = await removeImage(context.catalog, name!, {
        force: boolQuery(request.query, 'force'),
        now: context.clock.now(),
      });
      if (!boolQuery(request.query, 'noprune') && outcome.freed.length > 0) {
        await collectFreed(context)(outcome.freed);
      }
      return json(200, outcome.items);
    },
  },
  {
    method: 'GET',
    pattern: /^\/cache\/pins$/,
    scope: ROUTE_SCOPES['GET /cache/pins'],
    handler: async (_request, _params, context) =>
      json(200, await listPinViews(context.catalog, context.clock.now())),
  },
  {
    method: 'PUT',
    pattern: /^\/cache\/pins\/(.+)$/,
    scope: ROUTE_SCOPES['PUT /cache/pins/{name}'],
    handler: async (request, [name], context) => {
      const now = context.clock.now();
      const { pin, created } = await pinImage(
        context.catalog,
        name!,
        {
          note: request.query.get('note') ?? undefined,
          expires: request.query.get('expires') || undefined,
        },
        now,
      );
      const view = (await listPinViews(context.catalog, now)).find((p) => p.Name === pin.name);
      return json(created ? 201 : 200, view);
    },
  },
  {
    method: 'DELETE',
    pattern: /^\/cache\/pins\/(.+)$/,
    scope: ROUTE_SCOPES['DELETE /cache/pins/{name}'],
    handler: async (_request, [name], context) => {
      await unpinImage(context.catalog, name!);
      return { status: 204 };
    },
  },
];
