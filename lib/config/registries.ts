/**
 * The upstream allow-list (IMAGE_CACHE_REGISTRIES) and the credentials for it (a Docker
 * config.json, from IMAGE_CACHE_AUTH_FILE or the registry secret).
 */
import { readFileSync } from 'node:fs';
import { isRegistryHost, normalizeRegistry } from '../reference.ts';
import { ConfigError, isObject } from './values.ts';

/** Registry host (as in references: `docker.io`, `localhost:5000`) to its API base URL. */
export type RegistryMap = Map<string, URL>;

export interface RegistryCredentials {
  username: string;
  password: string;
  /** OAuth refresh token from `docker login` with an identity provider; used instead of a password. */
  identityToken?: string;
}

/** Registry host (lowercase, `docker.io` for Docker Hub) to what to log in with. */
export type CredentialMap = Map<string, RegistryCredentials>;

export const REGISTRIES_VAR = 'IMAGE_CACHE_REGISTRIES';
export const AUTH_FILE_VAR = 'IMAGE_CACHE_AUTH_FILE';

// Docker Hub's API does not live at docker.io; every other default serves its API on its name.
const DEFAULT_REGISTRIES: readonly (readonly [string, string])[] = [
  ['docker.io', 'https://registry-1.docker.io'],
  ...['ghcr.io', 'quay.io', 'registry.k8s.io', 'gcr.io', 'mcr.microsoft.com', 'public.ecr.aws'].map(
    (name) => [name, `https://${name}`] as const,
  ),
];

/**
 * IMAGE_CACHE_REGISTRIES: `name=url,name=url`. This is the upstream allow-list, so it is
 * strict: the url is only a scheme and a host (plain http only when written), never a path
 * or credentials. Unset or empty means the well-known public registries.
 */
export function parseRegistries(value?: string): RegistryMap {
  const registries: RegistryMap = new Map();
  if (value === undefined || value.trim() === '') {
    for (const [name, url] of DEFAULT_REGISTRIES) registries.set(name, new URL(url));
    return registries;
  }
  for (const entry of value.split(',')) {
    const item = entry.trim();
    if (item === '') continue; // a trailing comma is harmless
    const eq = item.indexOf('=');
    if (eq === -1) {
      throw new ConfigError(
        `${REGISTRIES_VAR}: entry ${JSON.stringify(item)} must be name=url, e.g. docker.io=https://registry-1.docker.io`,
      );
    }
    const name = registryName(item.slice(0, eq).trim(), REGISTRIES_VAR);
    if (registries.has(name)) {
      throw new ConfigError(`${REGISTRIES_VAR}: registry ${name} is listed more than once`);
    }
    registries.set(name, registryUrl(name, item.slice(eq + 1).trim()));
  }
  return registries;
}

/** IMAGE_CACHE_AUTH_FILE: a Docker `config.json`, read once at start. */
export function loadAuthFile(path?: string): CredentialMap {
  if (path === undefined || path.trim() === '') return new Map();
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`${AUTH_FILE_VAR}: cannot read ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  return parseAuthConfig(text, AUTH_FILE_VAR, path);
}

/**
 * The `auths` of a Docker `config.json`, from the auth file or the registry secret; `setting`
 * (the variable) and `source` (the path, the secret) start every message. Entries without
 * credentials (what `docker login` leaves when a credential helper holds the secret) are
 * skipped. Messages name the registry, never the secret, and so leave out JSON.parse's own
 * message, which quotes the text it failed on.
 */
export function parseAuthConfig(text: string, setting: string, source: string): CredentialMap {
  const credentials: CredentialMap = new Map();
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    const position = /at position \d+/.exec((error as Error).message)?.[0];
    throw new ConfigError(
      `${setting}: ${source} is not valid JSON${position ? ` (${position})` : ''}`,
    );
  }
  if (!isObject(document)) {
    throw new ConfigError(`${setting}: ${source} must hold a JSON object with "auths"`);
  }
  const auths = document.auths ?? {};
  if (!isObject(auths)) {
    throw new ConfigError(`${setting}: "auths" in ${source} must be an object`);
  }
  const origins = new Map<string, string>();
  for (const [key, entry] of Object.entries(auths)) {
    const where = `${setting}: auths[${JSON.stringify(key)}] in ${source}`;
    if (!isObject(entry)) throw new ConfigError(`${where} must be an object`);
    const found = entryCredentials(entry, where);
    if (!found) continue;
    const name = authKeyToRegistry(key, where);
    const previous = credentials.get(name);
    if (previous && !sameCredentials(previous, found)) {
      throw new ConfigError(
        `${where} and auths[${JSON.stringify(origins.get(name))}] both name ${name} with different credentials`,
      );
    }
    credentials.set(name, found);
    origins.set(name, key);
  }
  return credentials;
}

function registryName(raw: string, setting: string): string {
  const name = normalizeRegistry(raw.toLowerCase());
  // A name a reference could never produce (e.g. `myregistry`, which `myregistry/app` reads as
  // a Docker Hub namespace) would be allow-listed but unreachable: say so now.
  if (!isRegistryHost(name)) {
    throw new ConfigError(
      `${setting}: ${JSON.stringify(raw)} is not a registry host: it must be a domain or address ` +
        `with a "." or ":port" (or be localhost), as in image references`,
    );
  }
  return name;
}

function registryUrl(name: string, raw: string): URL {
  const where = `${REGISTRIES_VAR}: url for ${name}`;
  if (!/^https?:\/\//i.test(raw)) {
    throw new ConfigError(
      `${where} must start with https:// (or http:// for a plain-text registry)`,
    );
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(`${where} is not a valid URL: ${JSON.stringify(raw)}`);
  }
  if (url.username || url.password) {
    throw new ConfigError(`${where} must not contain credentials: put them in ${AUTH_FILE_VAR}`);
  }
  if (url.pathname !== '/' || url.search || url.hash) {
    throw new ConfigError(
      `${where} must be only a scheme and host (the registry API is always under /v2/), got ${JSON.stringify(raw)}`,
    );
  }
  return url;
}

/** Docker keys Hub credentials as `https://index.docker.io/v1/`; others by host, maybe a URL. */
function authKeyToRegistry(key: string, where: string): string {
  const host = key
    .trim()
    .replace(/^[a-z][a-z0-9+.-]*:\/\//i, '')
    .split('/')[0]!;
  const name = host.toLowerCase() === 'registry-1.docker.io' ? 'docker.io' : host;
  return registryName(name, where);
}

function entryCredentials(
  entry: Record<string, unknown>,
  where: string,
): RegistryCredentials | undefined {
  const auth = optionalString(entry, 'auth', where);
  const username = optionalString(entry, 'username', where);
  const password = optionalString(entry, 'password', where);
  const identityToken = optionalString(entry, 'identitytoken', where);

  let found: RegistryCredentials | undefined;
  if (auth) {
    found = decodeBasicAuth(auth, where);
  } else if (username !== undefined || password !== undefined) {
    if (!username || password === undefined) {
      throw new ConfigError(`${where} needs both "username" and "password"`);
    }
    found = { username, password };
  }
  if (identityToken) {
    // Docker stores `<token>` as the user name when only an identity token exists.
    found = {
      username: found?.username ?? '<token>',
      password: found?.password ?? '',
      identityToken,
    };
  }
  return found;
}

function decodeBasicAuth(auth: string, where: string): RegistryCredentials {
  const compact = auth.trim();
  // Buffer.from ignores invalid characters silently, which would turn a typo into a wrong login.
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(compact) || compact.length % 4 === 1) {
    throw new ConfigError(`${where}: "auth" is not valid base64`);
  }
  const decoded = Buffer.from(compact, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0) {
    throw new ConfigError(`${where}: "auth" must be base64 of username:password`);
  }
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

function optionalString(entry: Record<string, unknown>, field: string, where: string) {
  const value = entry[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw new ConfigError(`${where}: "${field}" must be a string`);
  return value;
}

function sameCredentials(a: RegistryCredentials, b: RegistryCredentials): boolean {
  return (
    a.username === b.username && a.password === b.password && a.identityToken === b.identityToken
  );
}
