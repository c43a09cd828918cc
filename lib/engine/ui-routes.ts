/**
 * The dashboard (/cache/ui/): one page, one stylesheet, one script, all from strings in the
 * bundle (lib/ui/), so the Node server and the Lambda functions serve the same bytes without a
 * file system or a build step. The page is open (it holds no data and asks for a token itself);
 * the JSON it reads needs `read` as always.
 */
import { createHash } from 'node:crypto';
import { ROUTE_SCOPES } from '../auth/scopes.ts';
import { pageHtml } from '../ui/page.ts';
import { SCRIPT } from '../ui/script.ts';
import { STYLE } from '../ui/style.ts';
import type { HttpResponse } from './http.ts';
import type { Route } from './router.ts';

/** Content-addressed names: a new build changes them, so the assets may be cached for a year. */
function hashed(name: string, ext: string, body: string): string {
  return `${name}.${createHash('sha256').update(body).digest('hex').slice(0, 16)}.${ext}`;
}

const STYLE_NAME = hashed('app', 'css', STYLE);
const SCRIPT_NAME = hashed('app', 'js', SCRIPT);
/** The asset names this build serves, for the tests that ask for them. */
export const UI_ASSETS = { style: STYLE_NAME, script: SCRIPT_NAME } as const;
const PAGE = pageHtml({ style: STYLE_NAME, script: SCRIPT_NAME });

/** Only the page's own files and JSON from the same origin; no inline script or style. */
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  // data: only for the empty icon, so the browser does not ask for /favicon.ico.
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const SECURITY_HEADERS = {
  'Content-Security-Policy': CSP,
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
};

function asset(type: string, body: string, cacheControl: string): HttpResponse {
  return {
    status: 200,
    headers: { 'Content-Type': type, 'Cache-Control': cacheControl, ...SECURITY_HEADERS },
    body,
  };
}

const IMMUTABLE = 'public, max-age=31536000, immutable';

export const uiRoutes: Route[] = [
  {
    method: 'GET',
    pattern: /^\/cache\/ui$/,
    scope: ROUTE_SCOPES['GET /cache/ui/'],
    // Relative, so it holds behind any host or stage prefix.
    handler: () => ({ status: 308, headers: { Location: 'ui/' } }),
  },
  {
    method: 'GET',
    pattern: /^\/cache\/ui\/(?:index\.html)?$/,
    scope: ROUTE_SCOPES['GET /cache/ui/'],
    // no-cache: the page names the current assets, so it is checked on every visit.
    handler: () => asset('text/html; charset=utf-8', PAGE, 'no-cache'),
  },
  {
    method: 'GET',
    pattern: new RegExp(`^/cache/ui/${STYLE_NAME.replaceAll('.', '\\.')}$`),
    scope: ROUTE_SCOPES['GET /cache/ui/'],
    handler: () => asset('text/css; charset=utf-8', STYLE, IMMUTABLE),
  },
  {
    method: 'GET',
    pattern: new RegExp(`^/cache/ui/${SCRIPT_NAME.replaceAll('.', '\\.')}$`),
    scope: ROUTE_SCOPES['GET /cache/ui/'],
    handler: () => asset('text/javascript; charset=utf-8', SCRIPT, IMMUTABLE),
  },
];
