import { ROUTE_SCOPES } from '../auth/scopes.ts';
import type { UpstreamHeadroom } from '../metrics/names.ts';
import { registryCredentialStates } from '../registry/anonymous-registries.ts';
import { parseSince, statsReport } from '../stats/stats-report.ts';
import type { EngineContext } from './context.ts';
import { json } from './http.ts';
import type { Route } from './router.ts';

/** What Docker has no word for lives under /cache. */
export const cacheRoutes: Route[] = [
  {
    // The allow-list, the rate limits each registry last reported (Docker Hub's pull quota),
    // and which registries are pulled anonymously.
    method: 'GET',
    pattern: /^\/cache\/registries$/,
    scope: ROUTE_SCOPES['GET /cache/registries'],
    handler: async (_request, _params, context) => {
      const states = await registryCredentialStates(context.registries, context.credentials);
      return json(
        200,
        [...context.registries].map(([name, url]) => ({
          Name: name,
          URL: url.origin,
          RateLimit: context.upstream.rateLimit(name) ?? null,
          ...states.get(name),
        })),
      );
    },
  },
  {
    // GET /cache/stats?since=72h: the hourly history, its totals and the storage figures.
    method: 'GET',
    pattern: /^\/cache\/stats$/,
    scope: ROUTE_SCOPES['GET /cache/stats'],
    handler: async (request, _params, context) => {
      const now = context.clock.now();
      const since = parseSince(request.query.get('since'), now);
      // What this process counted since its last flush belongs in the answer too; a failed
      // write stays booked for the scheduled flush, which reports it.
      await context.statsRecorder?.flush().catch(() => undefined);
      const report = await statsReport(
        context,
        { since, now },
        { budgetBytes: context.maintenance.maxBytes, upstreams: upstreamHeadroom(context) },
      );
      return json(200, report);
    },
  },
];

/** The rate limits the allow-listed registries last reported, as the history's figures name them. */
function upstreamHeadroom(context: EngineContext): UpstreamHeadroom[] {
  return [...context.registries.keys()].map((registry) => {
    const limit = context.upstream.rateLimit(registry);
    return {
      registry,
      ...(limit?.remaining !== undefined && { rateLimitRemaining: limit.remaining }),
      ...(limit?.limit !== undefined && { rateLimitLimit: limit.limit }),
      ...(limit && { observedAt: limit.observedAt }),
    };
  });
}
