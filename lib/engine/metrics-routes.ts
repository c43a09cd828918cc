import { ROUTE_SCOPES } from '../auth/scopes.ts';
import type { Route } from './router.ts';

/** The exposition format Prometheus scrapes; prom-client names the same one. */
const PROMETHEUS_TEXT = 'text/plain; version=0.0.4; charset=utf-8';

/**
 * The route families requests are counted by: few enough to keep /metrics small (no image names
 * in labels), enough to tell pulls, saves and the registry door apart.
 */
export function routeFamily(method: string, path: string): string {
  if (path.startsWith('/v2/') || path === '/v2') return 'registry';
  const unversioned = path.replace(/^\/v\d+\.\d+(?=\/)/, '');
  if (unversioned === '/_ping' || unversioned === '/version') return 'system';
  if (unversioned === '/metrics') return 'metrics';
  if (unversioned === '/images/create') return 'pull';
  if (unversioned === '/images/load' || unversioned.startsWith('/cache/loads')) return 'load';
  if (
    unversioned === '/images/get' ||
    (method === 'GET' && /^\/images\/.+\/get$/.test(unversioned))
  ) {
    return 'save';
  }
  if (unversioned.startsWith('/images/')) return 'images';
  if (unversioned.startsWith('/cache/')) return 'cache';
  return 'other';
}

export const metricsRoutes: Route[] = [
  {
    method: 'GET',
    pattern: /^\/metrics$/,
    scope: ROUTE_SCOPES['GET /metrics'],
    handler: async (_request, _params, context) => ({
      status: 200,
      headers: { 'Content-Type': PROMETHEUS_TEXT, 'Cache-Control': 'no-store' },
      body: await context.metrics.prometheusText(),
    }),
  },
];
