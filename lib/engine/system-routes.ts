import { arch, release } from 'node:os';
import { ROUTE_SCOPES } from '../auth/scopes.ts';
import { API_VERSION, MIN_API_VERSION } from './api-version.ts';
import { json } from './http.ts';
import type { Route } from './router.ts';

const PING_HEADERS = {
  'Api-Version': API_VERSION,
  'Docker-Experimental': 'false',
  Ostype: 'linux',
  'Cache-Control': 'no-cache, no-store, must-revalidate',
  Pragma: 'no-cache',
};

/** Go's GOARCH names, which Docker reports. */
function goArch(): string {
  const a = arch();
  return a === 'x64' ? 'amd64' : a === 'ia32' ? '386' : a;
}

export const systemRoutes: Route[] = [
  {
    method: ['GET', 'HEAD'],
    pattern: /^\/_ping$/,
    scope: ROUTE_SCOPES['GET /_ping'],
    handler: (request) => ({
      status: 200,
      headers: { ...PING_HEADERS, 'Content-Type': 'text/plain; charset=utf-8' },
      body: request.method === 'HEAD' ? undefined : 'OK',
    }),
  },
  {
    method: 'GET',
    pattern: /^\/version$/,
    scope: ROUTE_SCOPES['GET /version'],
    handler: (_request, _params, context) =>
      json(
        200,
        {
          Platform: { Name: 'image-cache' },
          Components: [
            {
              Name: 'image-cache',
              Version: context.version,
              Details: { ApiVersion: API_VERSION, MinAPIVersion: MIN_API_VERSION },
            },
          ],
          Version: context.version,
          ApiVersion: API_VERSION,
          MinAPIVersion: MIN_API_VERSION,
          GitCommit: '',
          GoVersion: `node${process.versions.node}`,
          Os: 'linux',
          Arch: goArch(),
          KernelVersion: release(),
          BuildTime: '',
        },
        { 'Api-Version': API_VERSION },
      ),
  },
];
