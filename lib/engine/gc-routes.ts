/** Garbage collection and retention on demand, and the last collection reports. */
import { ROUTE_SCOPES } from '../auth/scopes.ts';
import { parseDuration } from '../duration.ts';
import { collectFreed, collectGarbage } from '../gc.ts';
import { applyRetention, parseByteSize, type RetentionSettings } from '../retention.ts';
import type { EngineContext } from './context.ts';
import { boolQuery, json, limitQuery } from './http.ts';
import type { Route } from './router.ts';

const DEFAULT_REPORTS = 20;
const MAX_REPORTS = 100;

export const gcRoutes: Route[] = [
  {
    // POST /cache/gc?dryRun=1&grace=0s: a full mark-and-sweep now; the report is the answer.
    method: 'POST',
    pattern: /^\/cache\/gc$/,
    scope: ROUTE_SCOPES['POST /cache/gc'],
    handler: async (request, _params, context) => {
      const graceText = request.query.get('grace');
      const graceMs = graceText ? parseDuration(graceText) : context.maintenance.gcGraceMs;
      const report = await collectGarbage(context, {
        graceMs,
        dryRun: boolQuery(request.query, 'dryRun'),
        trigger: 'manual',
      });
      return json(200, report);
    },
  },
  {
    method: 'GET',
    pattern: /^\/cache\/gc$/,
    scope: ROUTE_SCOPES['GET /cache/gc'],
    handler: async (request, _params, context) => {
      const limit = limitQuery(request.query, DEFAULT_REPORTS, MAX_REPORTS);
      return json(200, await context.gcReports.listGcReports(limit));
    },
  },
  {
    // POST /cache/retention[?maxBytes=50GB&maxAge=30d]: the configured policy, or the one given.
    method: 'POST',
    pattern: /^\/cache\/retention$/,
    scope: ROUTE_SCOPES['POST /cache/retention'],
    handler: async (request, _params, context) => {
      const settings = retentionSettings(request.query, context);
      return json(200, await applyRetention(context, settings, collectFreed(context)));
    },
  },
];

function retentionSettings(query: URLSearchParams, context: EngineContext): RetentionSettings {
  const { maxBytes, maxAgeMs } = context.maintenance;
  const bytesText = query.get('maxBytes');
  const ageText = query.get('maxAge');
  const settings: RetentionSettings = {
    ...(maxBytes !== undefined && { maxBytes }),
    ...(maxAgeMs !== undefined && { maxAgeMs }),
  };
  if (bytesText) settings.maxBytes = parseByteSize(bytesText);
  if (ageText) settings.maxAgeMs = parseDuration(ageText);
  return settings;
}
