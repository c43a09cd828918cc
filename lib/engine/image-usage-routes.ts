/** `GET /cache/images`: the dashboard's image listing (lib/image-usage.ts). */
import { ROUTE_SCOPES } from '../auth/scopes.ts';
import { listImageUsage } from '../image-usage.ts';
import { json } from './http.ts';
import type { Route } from './router.ts';

export const imageUsageRoutes: Route[] = [
  {
    // Sizes, last use, pins and pull counts: what `image ls` lists, plus how each is used.
    method: 'GET',
    pattern: /^\/cache\/images$/,
    scope: ROUTE_SCOPES['GET /cache/images'],
    handler: async (_request, _params, context) =>
      json(200, await listImageUsage(context.catalog, context.clock.now())),
  },
];
