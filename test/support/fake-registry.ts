import { randomBytes } from 'node:crypto';
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Digest } from '../../lib/digest.ts';
import { digestOf } from './fake-images.ts';
import { serveBody } from './fake-registry-body.ts';
import type { GeneratedImage, GeneratedIndex } from './image-factory.ts';

export {
  digestOf,
  type ImageOptions,
  makeBlob,
  type PushedImage,
  pushImage,
  pushIndex,
  schema1Manifest,
} from './fake-images.ts';

/**
 * An in-process registry (enough of the OCI distribution API to pull) that serves images from
 * memory and misbehaves on request. Faults are registered per path and consumed as they fire,
 * so a test can say "reset this blob once after 1000 bytes" and then assert the client
 * recovered. Every request is recorded with its headers, so tests count fetches, token
 * requests and check what was (not) sent. `/cdn/<digest>` serves blobs without auth so a
 * second instance can play the CDN a blob GET redirects to.
 */

export type Fault =
  /** Send `afterBytes` of the body, then close the connection. */
  | { kind: 'reset'; afterBytes: number; times?: number }
  /** Send `afterBytes`, then go silent with the connection open. */
  | { kind: 'stall'; afterBytes: number; times?: number }
  /** Flip one byte in the middle of the body. */
  | { kind: 'corrupt'; times?: number }
  /** Serve `delta` bytes fewer (negative) or more (positive), with a matching Content-Length. */
  | { kind: 'size'; delta: number; times?: number }
  /** Answer with this status (429, 500, ...) instead; `headers` e.g. `{'retry-after': '1'}`. */
  | {
      kind: 'status';
      status: number;
      headers?: Record<string, string>;
      body?: string;
      times?: number;
    }
  /** Redirect (307 by default) to `to`, e.g. `cdn.cdnUrl(digest)`. */
  | { kind: 'redirect'; to: string; status?: number; times?: number }
  /**
   * Send the body in `chunkBytes` pieces `delayMs` apart; with `gate`, stop once `afterBytes`
   * went out until `open` settles (an upstream as slow as the test needs, not a guess of it).
   */
  | {
      kind: 'slow';
      chunkBytes: number;
      delayMs: number;
      gate?: { afterBytes: number; open: Promise<unknown> };
      times?: number;
    }
  /** Set (or, with `value: undefined`, drop) a response header. */
  | { kind: 'header'; name: string; value: string | undefined; times?: number };

export type BodyFault = Extract<Fault, { kind: 'reset' | 'stall' | 'corrupt' | 'size' | 'slow' }>;

export type FakeAuth =
  | {
      kind: 'bearer';
      /** `expires_in` of issued tokens, seconds. Default 60. */
      expiresIn?: number;
      /** When set, the token endpoint requires these (Basic auth). */
      credentials?: { username: string; password: string };
      /** Which field carries the token. Default `token`. */
      tokenField?: 'token' | 'access_token';
      service?: string;
    }
  | { kind: 'basic'; username: string; password: string };

export interface FakeRegistryOptions {
  auth?: FakeAuth;
  /** Honour `Range` on blob GETs. Default true. */
  rangeSupport?: boolean;
  /** Serve the OCI referrers API (`/v2/<name>/referrers/<digest>`). Default false: 404. */
  referrers?: boolean;
  /** Send Docker Hub style RateLimit headers on manifest responses; GETs use one pull. */
  rateLimit?: { limit: number; remaining: number; windowSeconds: number; source?: string };
}

export interface RecordedRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
}

interface StoredManifest {
  raw: Buffer;
  mediaType: string;
  digest: Digest;
}

export class FakeRegistry {
  readonly options: FakeRegistryOptions;
  rangeSupport: boolean;
  readonly requests: RecordedRequest[] = [];
  /** Tokens the token endpoint issued, with their scope. */
  readonly tokens = new Map<string, string>();
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #blobs = new Map<string, Buffer>();
  readonly #manifests = new Map<string, Map<string, StoredManifest>>();
  readonly #faults = new Map<string, Fault[]>();
  readonly #active = new Map<string, number>();
  readonly #referrerIndex = new Map<string, Record<string, unknown>[]>();
  #url: URL | undefined;

  private constructor(options: FakeRegistryOptions) {
    this.options = options;
    this.rangeSupport = options.rangeSupport ?? true;
    this.#server = createServer((req, res) => {
      this.#handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500).end(String(err));
        else res.destroy();
      });
    });
    this.#server.on('connection', (socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
  }

  static async start(options: FakeRegistryOptions = {}): Promise<FakeRegistry> {
    const registry = new FakeRegistry(options);
    await new Promise<void>((resolve) => registry.#server.listen(0, '127.0.0.1', resolve));
    const { port } = registry.#server.address() as AddressInfo;
    registry.#url = new URL(`http://127.0.0.1:${port}`);
    return registry;
  }

  /** `http://127.0.0.1:<port>`, the base URL to configure for the registry. */
  get url(): URL {
    if (!this.#url) throw new Error('fake registry not started');
    return new URL(this.#url);
  }

  /** `127.0.0.1:<port>`, usable as a registry name in references. */
  get host(): string {
    return this.url.host;
  }

  addBlob(bytes: Uint8Array): Digest {
    const digest = digestOf(bytes);
    this.#blobs.set(digest, Buffer.from(bytes));
    return digest;
  }

  /** Serves a generated image (its blobs and manifest) under `repo`, and under `tag` if given. */
  serveImage(repo: string, image: GeneratedImage, tag?: string): void {
    for (const blob of image.blobs) this.addBlob(blob.bytes!);
    this.addManifest(repo, image.digest, image.bytes, image.mediaType);
    if (tag) this.addManifest(repo, tag, image.bytes, image.mediaType);
  }

  /** Serves a generated index, its platform images and their blobs, under `repo` and `tag`. */
  serveIndex(repo: string, index: GeneratedIndex, tag: string): void {
    for (const image of index.images) this.serveImage(repo, image);
    this.addManifest(repo, index.digest, index.bytes, index.mediaType);
    this.addManifest(repo, tag, index.bytes, index.mediaType);
  }

  /** Stores a manifest under `ref` (a tag) and under its digest; returns the digest. */
  addManifest(repo: string, ref: string, raw: Uint8Array | string, mediaType: string): Digest {
    const bytes = Buffer.from(raw);
    const digest = digestOf(bytes);
    let refs = this.#manifests.get(repo);
    if (!refs) {
      refs = new Map();
      this.#manifests.set(repo, refs);
    }
    const stored = { raw: bytes, mediaType, digest };
    refs.set(ref, stored);
    refs.set(digest, stored);
    return digest;
  }

  blobPath(repo: string, digest: string): string {
    return `/v2/${repo}/blobs/${digest}`;
  }

  manifestPath(repo: string, ref: string): string {
    return `/v2/${repo}/manifests/${ref}`;
  }

  /** A URL on this server that serves the blob without auth: a redirect target. */
  cdnUrl(digest: string): string {
    return new URL(`/cdn/${digest}`, this.url).href;
  }

  /** Queues a fault for requests to `path` (any method unless `method` is given). */
  inject(path: string, fault: Fault, method?: string): void {
    const key = method ? `${method} ${path}` : path;
    const list = this.#faults.get(key) ?? [];
    list.push({ ...fault, times: fault.times ?? 1 });
    this.#faults.set(key, list);
  }

  clearFaults(): void {
    this.#faults.clear();
  }

  /** Requests to `path` (exact, without query), optionally of one method. */
  requestsTo(path: string, method?: string): RecordedRequest[] {
    return this.requests.filter((r) => r.path === path && (!method || r.method === method));
  }

  count(path: string, method?: string): number {
    return this.requestsTo(path, method).length;
  }

  /** Responses to `path` still open: sent in part, or being sent (a slow body). */
  active(path: string): number {
    return this.#active.get(path) ?? 0;
  }

  /** Makes every issued token invalid, as a token service rotating its keys would. */
  revokeTokens(): void {
    this.tokens.clear();
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #takeFault(method: string, path: string): Fault | undefined {
    for (const key of [`${method} ${path}`, path]) {
      const list = this.#faults.get(key);
      const fault = list?.[0];
      if (!list || !fault) continue;
      fault.times = (fault.times ?? 1) - 1;
      if (fault.times <= 0) list.shift();
      return fault;
    }
    return undefined;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const method = req.method ?? 'GET';
    const path = decodeURIComponent(url.pathname);
    this.requests.push({ method, path, query: url.searchParams, headers: req.headers });
    this.#active.set(path, this.active(path) + 1);
    res.once('close', () => this.#active.set(path, this.active(path) - 1));
    req.resume();

    if (path === '/token') return this.#token(req, url, res);
    const cdn = /^\/cdn\/(sha256:[a-f0-9]{64})$/.exec(path)?.[1];
    const match = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(path);
    if (path === '/v2/' || path === '/v2') {
      if (!this.#authorized(req, undefined, res)) return;
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      return;
    }
    const listing = /^\/v2\/(.+)\/(tags\/list|referrers\/(sha256:[a-f0-9]{64}))$/.exec(path);
    if (listing) {
      if (!this.#authorized(req, listing[1]!, res)) return;
      if (listing[3]) this.#referrers(res, listing[1]!, listing[3]);
      else this.#tagList(res, listing[1]!, url.searchParams);
      return;
    }
    if (!cdn && !match) {
      this.#error(res, 404, 'NOT_FOUND', 'not found');
      return;
    }
    const [, repo = '', kind, ref = ''] = match ?? [];
    // Auth comes first, as on a real registry, so a 401 does not use up a fault.
    if (!cdn && !this.#authorized(req, repo, res)) return;

    const fault = this.#takeFault(method, path);
    if (fault?.kind === 'status') {
      const body =
        fault.body ??
        JSON.stringify({
          errors: [
            fault.status === 429
              ? { code: 'TOOMANYREQUESTS', message: 'You have reached your pull rate limit.' }
              : { code: 'UNKNOWN', message: `injected ${fault.status}` },
          ],
        });
      res.writeHead(fault.status, { 'content-type': 'application/json', ...fault.headers });
      res.end(body);
      return;
    }
    if (fault?.kind === 'redirect') {
      res.writeHead(fault.status ?? 307, { location: fault.to }).end();
      return;
    }
    if (cdn) this.#blob(req, res, cdn, fault);
    else if (kind === 'blobs') this.#blob(req, res, ref, fault);
    else this.#manifest(req, res, repo, ref, fault);
  }

  #tagList(res: ServerResponse, repo: string, query: URLSearchParams): void {
    const refs = this.#manifests.get(repo);
    if (!refs) {
      this.#error(res, 404, 'NAME_UNKNOWN', 'repository name not known to registry');
      return;
    }
    const last = query.get('last');
    let tags = [...refs.keys()]
      .filter((ref) => !ref.startsWith('sha256:') && (last === null || ref > last))
      .sort();
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    const n = query.get('n');
    if (n !== null && tags.length > Number(n)) {
      tags = tags.slice(0, Number(n));
      headers.link = `</v2/${repo}/tags/list?n=${n}&last=${tags.at(-1)}>; rel="next"`;
    }
    res.writeHead(200, headers).end(JSON.stringify({ name: repo, tags }));
  }

  #referrers(res: ServerResponse, repo: string, subject: string): void {
    if (!this.options.referrers) {
      this.#error(res, 404, 'NOT_FOUND', 'not found');
      return;
    }
    const manifests = this.#referrerIndex.get(`${repo}@${subject}`) ?? [];
    res.writeHead(200, { 'content-type': 'application/vnd.oci.image.index.v1+json' }).end(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests,
      }),
    );
  }

  /** Lists `descriptor` among the referrers of `subject` (with `referrers: true`). */
  addReferrer(repo: string, subject: string, descriptor: Record<string, unknown>): void {
    const key = `${repo}@${subject}`;
    this.#referrerIndex.set(key, [...(this.#referrerIndex.get(key) ?? []), descriptor]);
  }

  #manifest(
    req: IncomingMessage,
    res: ServerResponse,
    repo: string,
    ref: string,
    fault: Fault | undefined,
  ): void {
    const refs = this.#manifests.get(repo);
    if (!refs) {
      this.#error(res, 404, 'NAME_UNKNOWN', 'repository name not known to registry');
      return;
    }
    const stored = refs.get(ref);
    if (!stored) {
      this.#error(res, 404, 'MANIFEST_UNKNOWN', 'manifest unknown');
      return;
    }
    const headers: Record<string, string> = {
      'content-type': stored.mediaType,
      'docker-content-digest': stored.digest,
      ...this.#rateLimitHeaders(req.method === 'GET'),
    };
    if (fault?.kind === 'header') {
      if (fault.value === undefined) delete headers[fault.name.toLowerCase()];
      else headers[fault.name.toLowerCase()] = fault.value;
    }
    const bodyFault = fault && fault.kind !== 'header' ? (fault as BodyFault) : undefined;
    serveBody(req, res, 200, headers, stored.raw, bodyFault);
  }

  #blob(req: IncomingMessage, res: ServerResponse, digest: string, fault: Fault | undefined): void {
    const bytes = this.#blobs.get(digest);
    if (!bytes) {
      this.#error(res, 404, 'BLOB_UNKNOWN', 'blob unknown to registry');
      return;
    }
    const headers: Record<string, string> = {
      'content-type': 'application/octet-stream',
      'docker-content-digest': digest,
      'accept-ranges': this.rangeSupport ? 'bytes' : 'none',
    };
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    let status = 200;
    let body = bytes;
    if (range && this.rangeSupport) {
      const start = Number(range[1]);
      const end = range[2] ? Math.min(Number(range[2]), bytes.length - 1) : bytes.length - 1;
      if (start >= bytes.length) {
        res.writeHead(416, { 'content-range': `bytes */${bytes.length}` }).end();
        return;
      }
      status = 206;
      body = bytes.subarray(start, end + 1);
      headers['content-range'] = `bytes ${start}-${end}/${bytes.length}`;
    }
    if (fault?.kind === 'header') {
      if (fault.value === undefined) delete headers[fault.name.toLowerCase()];
      else headers[fault.name.toLowerCase()] = fault.value;
    }
    const bodyFault = fault && fault.kind !== 'header' ? (fault as BodyFault) : undefined;
    serveBody(req, res, status, headers, body, bodyFault);
  }

  #rateLimitHeaders(isPull: boolean): Record<string, string> {
    const limit = this.options.rateLimit;
    if (!limit) return {};
    if (isPull && limit.remaining > 0) limit.remaining--;
    const window = `w=${limit.windowSeconds}`;
    return {
      'ratelimit-limit': `${limit.limit};${window}`,
      'ratelimit-remaining': `${limit.remaining};${window}`,
      ...(limit.source ? { 'docker-ratelimit-source': limit.source } : {}),
    };
  }

  /** Checks auth for a repository (or the /v2/ ping); answers the 401 itself when it fails. */
  #authorized(req: IncomingMessage, repo: string | undefined, res: ServerResponse): boolean {
    const auth = this.options.auth;
    if (!auth) return true;
    const header = req.headers.authorization ?? '';
    if (auth.kind === 'basic') {
      if (header === basic(auth.username, auth.password)) return true;
      res.setHeader('www-authenticate', 'Basic realm="fake-registry"');
      this.#error(res, 401, 'UNAUTHORIZED', 'authentication required');
      return false;
    }
    const scope = repo ? `repository:${repo}:pull` : undefined;
    const token = header.startsWith('Bearer ') ? header.slice('Bearer '.length) : undefined;
    const granted = token ? this.tokens.get(token) : undefined;
    if (granted !== undefined && (!scope || granted.split(' ').includes(scope))) return true;
    const service = auth.service ?? 'fake-registry';
    const realm = new URL('/token', this.url).href;
    res.setHeader(
      'www-authenticate',
      `Bearer realm="${realm}",service="${service}"${scope ? `,scope="${scope}"` : ''}`,
    );
    this.#error(res, 401, 'UNAUTHORIZED', 'authentication required');
    return false;
  }

  #token(req: IncomingMessage, url: URL, res: ServerResponse): void {
    const auth = this.options.auth;
    if (auth?.kind !== 'bearer') {
      this.#error(res, 404, 'NOT_FOUND', 'no token service');
      return;
    }
    const creds = auth.credentials;
    if (creds && req.headers.authorization !== basic(creds.username, creds.password)) {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ details: 'incorrect username or password' }));
      return;
    }
    const token = randomBytes(16).toString('hex');
    this.tokens.set(token, url.searchParams.getAll('scope').join(' '));
    const body: Record<string, unknown> = { [auth.tokenField ?? 'token']: token };
    if (auth.expiresIn !== undefined) body.expires_in = auth.expiresIn;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  }

  #error(res: ServerResponse, status: number, code: string, message: string): void {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ errors: [{ code, message }] }));
  }
}

export function basic(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
}
