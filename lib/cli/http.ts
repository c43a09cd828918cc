/**
 * The CLI's HTTP client: one request function that adds the bearer token, turns connection
 * failures and `{"message": ...}` error bodies into typed errors, and an NDJSON line reader for
 * the streamed progress of pulls.
 */

export const DEFAULT_URL = 'http://127.0.0.1:5115';

/** The server answered with a 4xx/5xx; `message` is its `{"message": ...}` body. */
export class ApiError extends Error {
  override name = 'ApiError';
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/** Nothing answered at the configured address. */
export class ConnectionError extends Error {
  override name = 'ConnectionError';
}

export interface ClientOptions {
  baseUrl: string;
  token?: string;
}

export type Query = Record<string, string | readonly string[] | undefined>;

export interface RequestOptions {
  method?: string;
  query?: Query;
  headers?: Record<string, string>;
  body?: string;
}

export function clientOptionsFromEnv(env: NodeJS.ProcessEnv): ClientOptions {
  const raw = env.IMAGE_CACHE_URL?.trim() || DEFAULT_URL;
  const baseUrl = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`;
  const token = env.IMAGE_CACHE_TOKEN?.trim() || undefined;
  return token ? { baseUrl, token } : { baseUrl };
}

export class ApiClient {
  readonly baseUrl: string;
  readonly #token: string | undefined;

  constructor(options: ClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.#token = options.token;
  }

  url(path: string, query: Query = {}): string {
    const url = new URL(this.baseUrl + path);
    for (const [key, value] of Object.entries(query)) {
      if (value === undefined) continue;
      for (const v of typeof value === 'string' ? [value] : value) url.searchParams.append(key, v);
    }
    return url.href;
  }

  /** Send a request; resolves only for 2xx/3xx responses (body unread). */
  async request(path: string, options: RequestOptions = {}): Promise<Response> {
    const headers: Record<string, string> = { ...options.headers };
    if (this.#token) headers.authorization = `Bearer ${this.#token}`;
    let response: Response;
    try {
      response = await fetch(this.url(path, options.query), {
        method: options.method ?? 'GET',
        headers,
        ...(options.body === undefined ? {} : { body: options.body }),
      });
    } catch (error) {
      throw new ConnectionError(
        `Cannot connect to the image-cache server at ${this.baseUrl} (${causeText(error)}). ` +
          'Is it running? Set IMAGE_CACHE_URL to its address.',
      );
    }
    if (response.status >= 400) throw await apiError(response);
    return response;
  }

  async json<T>(path: string, options: RequestOptions = {}): Promise<T> {
    const response = await this.request(path, options);
    const text = await response.text();
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new ApiError(response.status, `invalid JSON in response to ${path}`);
    }
  }
}

/** A failed fetch's reason as node gives it: the socket's code (ECONNREFUSED) when there is one. */
export function causeText(error: unknown): string {
  const cause = error instanceof Error && error.cause instanceof Error ? error.cause : error;
  const code = (cause as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string') return code;
  return cause instanceof Error ? cause.message : String(cause);
}

/** The error a 4xx/5xx answer stands for, its text taken from a `{"message": ...}` body. */
export async function apiError(response: Response): Promise<ApiError> {
  const text = await response.text().catch(() => '');
  let message = text.trim();
  try {
    const body = JSON.parse(text) as { message?: unknown };
    if (typeof body.message === 'string') message = body.message;
  } catch {
    // Not JSON (a proxy's HTML page, say): show the text, or the status line when empty.
  }
  if (message === '') message = `${response.status} ${response.statusText}`.trim();
  return new ApiError(response.status, message);
}

/**
 * Yield each non-empty line of a streamed body, as it arrives. Docker's progress stream is one
 * JSON object per line.
 */
export async function* readLines(body: ReadableStream<Uint8Array> | null): AsyncGenerator<string> {
  if (!body) return;
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true });
    let newline = buffer.indexOf('\n');
    while (newline !== -1) {
      const line = buffer.slice(0, newline).trim();
      buffer = buffer.slice(newline + 1);
      if (line) yield line;
      newline = buffer.indexOf('\n');
    }
  }
  buffer += decoder.decode();
  if (buffer.trim()) yield buffer.trim();
}

/** Parse each line of an NDJSON stream. A line that is not JSON is an error: the stream broke. */
export async function* readJsonLines<T>(
  body: ReadableStream<Uint8Array> | null,
): AsyncGenerator<T> {
  for await (const line of readLines(body)) {
    try {
      yield JSON.parse(line) as T;
    } catch {
      throw new Error(`invalid JSON in progress stream: ${line.slice(0, 200)}`);
    }
  }
}

/** `/images/<name>` path part as the docker client sends it: slashes, `:` and `@` unescaped. */
export function imagePath(name: string): string {
  return name
    .split('/')
    .map((segment) => encodeURIComponent(segment).replaceAll('%3A', ':').replaceAll('%40', '@'))
    .join('/');
}
