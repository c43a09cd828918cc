/**
 * Image references, parsed and normalised the way Docker does it (distribution/reference
 * `ParseNormalizedNamed` followed by `TagNameOnly`), so that `nginx`, `docker.io/nginx` and
 * `index.docker.io/library/nginx:latest` all name the same stored repository, and every
 * invalid input fails with the message the docker CLI users already know.
 */
import type { Digest } from './digest.ts';
import { ImageCacheError, InvalidReferenceError } from './errors.ts';
import type { Reference, RepositoryName } from './model.ts';

export const DEFAULT_REGISTRY = 'docker.io';
export const DEFAULT_TAG = 'latest';
const LEGACY_DEFAULT_REGISTRY = 'index.docker.io';
const OFFICIAL_PREFIX = 'library/';
const MAX_REPOSITORY_LENGTH = 255;

// The grammar, piece by piece (see the distribution/reference grammar). Built from strings so
// the same pieces serve the whole-reference check and the name split.
const ALPHANUMERIC = '[a-z0-9]+';
// One dot, one or two underscores, or any run of dashes: repeated dashes keep hostnames valid
// as path components, and `__` is allowed for names that predate the stricter grammar.
const SEPARATOR = '(?:[._]|__|[-]+)';
const PATH_COMPONENT = `${ALPHANUMERIC}(?:${SEPARATOR}${ALPHANUMERIC})*`;
const REMOTE_NAME = `${PATH_COMPONENT}(?:/${PATH_COMPONENT})*`;
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN_NAME = `${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*`;
// Zone identifiers and IPv4-mapped forms are deliberately excluded, as in Docker.
const IPV6_ADDRESS = '\\[[a-fA-F0-9:]+\\]';
const DOMAIN_AND_PORT = `(?:${DOMAIN_NAME}|${IPV6_ADDRESS})(?::[0-9]+)?`;
const TAG = '[\\w][\\w.-]{0,127}';
const DIGEST = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}';

const REFERENCE_RE = new RegExp(
  `^((?:${DOMAIN_AND_PORT}/)?${REMOTE_NAME})(?::(${TAG}))?(?:@(${DIGEST}))?$`,
);
const NAME_RE = new RegExp(`^(?:(${DOMAIN_AND_PORT})/)?(${REMOTE_NAME})$`);
const TAG_RE = new RegExp(`^${TAG}$`);
const DOMAIN_RE = new RegExp(`^${DOMAIN_AND_PORT}$`);
const IDENTIFIER_RE = /^[a-f0-9]{64}$/;
// go-digest's own digest grammar, which decides "unsupported" versus "invalid format".
const GO_DIGEST_RE = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;
const HEX_BYTES_BY_ALGORITHM: Record<string, number> = { sha256: 32, sha384: 48, sha512: 64 };
const IMAGE_ID_RE = /^(?:sha256:)?[a-f0-9]{12,64}$/;

/**
 * Parses what a user typed (`nginx`, `ghcr.io/o/a:1.0`, `name@sha256:...`) into a normalised
 * reference. No default tag is added here: see `withDefaultTag`.
 */
export function parseReference(input: string): Reference {
  // A bare 64-hex string is an image ID; accepting it as a name would make IDs ambiguous.
  if (IDENTIFIER_RE.test(input)) {
    throw new InvalidReferenceError(
      `invalid repository name (${input}), cannot specify 64-byte hexadecimal strings`,
    );
  }
  const { registry, remainder } = splitRegistry(input);
  const colon = remainder.indexOf(':');
  const remote = colon === -1 ? remainder : remainder.slice(0, colon);
  if (remote.toLowerCase() !== remote) {
    throw new InvalidReferenceError(
      `invalid reference format: repository name (${remote}) must be lowercase`,
    );
  }

  const full = `${registry}/${remainder}`;
  const match = REFERENCE_RE.exec(full);
  if (!match) {
    const lower = full.toLowerCase();
    if (lower !== full && REFERENCE_RE.test(lower)) {
      throw new InvalidReferenceError('repository name must be lowercase');
    }
    throw new InvalidReferenceError();
  }
  const [, name = '', tag, digest] = match;
  const nameMatch = NAME_RE.exec(name);
  // Docker would accept e.g. `foo_bar.com/x` as a name without any domain (the first component
  // is no valid host but is a valid path); a cache must know which registry to ask, so refuse.
  if (!nameMatch?.[1] || nameMatch[1] !== registry) throw new InvalidReferenceError();
  const repository = nameMatch[2] ?? '';
  if (repository.length > MAX_REPOSITORY_LENGTH) {
    throw new InvalidReferenceError(
      `repository name must not be more than ${MAX_REPOSITORY_LENGTH} characters`,
    );
  }

  const ref: Reference = { registry, repository };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = validateReferenceDigest(digest);
  return ref;
}

/** Docker's `TagNameOnly`: a reference with neither tag nor digest means `:latest`. */
export function withDefaultTag(ref: Reference): Reference {
  if (ref.tag !== undefined || ref.digest !== undefined) return ref;
  return { ...ref, tag: DEFAULT_TAG };
}

/** The stored repository name: `docker.io/library/nginx`. */
export function repositoryName(ref: Reference): RepositoryName {
  return `${ref.registry}/${ref.repository}`;
}

/**
 * What `docker image ls` prints as REPOSITORY: Docker Hub names lose `docker.io/` and, for
 * official images, `library/`; other registries keep the full name.
 */
export function familiarRepository(name: RepositoryName): string {
  const slash = name.indexOf('/');
  if (slash === -1 || name.slice(0, slash) !== DEFAULT_REGISTRY) return name;
  const path = name.slice(slash + 1);
  if (path.startsWith(OFFICIAL_PREFIX)) {
    const official = path.slice(OFFICIAL_PREFIX.length);
    // `library/a/b` is not an official image; shortening it to `a/b` would name another repo.
    if (!official.includes('/')) return official;
  }
  return path;
}

/** The full form: `docker.io/library/nginx:latest@sha256:...`. */
export function formatReference(ref: Reference): string {
  return repositoryName(ref) + suffix(ref);
}

/** The form the docker CLI prints: `nginx:latest`, `user/app@sha256:...`, `ghcr.io/o/a:1`. */
export function familiarString(ref: Reference): string {
  return familiarRepository(repositoryName(ref)) + suffix(ref);
}

/**
 * The reference of `POST /images/create?fromImage=&tag=`, handled as moby does: a trailing
 * `:` (sent by `pull -a`) is ignored; a `tag` that parses as a digest replaces any tag or
 * digest in fromImage; any other `tag` replaces fromImage's tag (keeping its digest). Moby
 * pulls every tag when neither says which; a cache pulls `latest` instead.
 */
export function parsePullParams(fromImage: string, tag?: string): Reference {
  const parsed = parseReference(fromImage.endsWith(':') ? fromImage.slice(0, -1) : fromImage);
  let ref: Reference = parsed;
  if (tag) {
    if (looksLikeDigest(tag)) {
      ref = {
        registry: parsed.registry,
        repository: parsed.repository,
        digest: validateReferenceDigest(tag),
      };
    } else {
      ref = { ...parsed, tag: parseTag(tag) };
    }
  }
  // Moby refuses to pull `scratch`: it is the reserved "no base image" name, never a real image.
  if (ref.registry === DEFAULT_REGISTRY && ref.repository === `${OFFICIAL_PREFIX}scratch`) {
    throw new ImageCacheError('FORBIDDEN', "'scratch' is a reserved name");
  }
  return withDefaultTag(ref);
}

/** Checks a tag on its own (`docker tag x repo:TAG`, the `tag` query parameter). */
export function parseTag(tag: string): string {
  if (!TAG_RE.test(tag)) throw new InvalidReferenceError('invalid tag format');
  return tag;
}

/** Whether `host` could be the registry part of a reference (`docker.io`, `[::1]:5000`). */
export function isRegistryHost(host: string): boolean {
  return (
    DOMAIN_RE.test(host) &&
    (host === 'localhost' || /[.:]/.test(host) || host !== host.toLowerCase())
  );
}

/** Docker Hub has two names; the stored one is always `docker.io`. */
export function normalizeRegistry(host: string): string {
  return host === LEGACY_DEFAULT_REGISTRY ? DEFAULT_REGISTRY : host;
}

/**
 * Whether `{name}` in `/images/{name}/json` should be tried as an image ID: 12 to 64 lowercase
 * hex characters, with or without `sha256:` (Docker shows 12, and accepts the full digest).
 */
export function looksLikeImageId(value: string): boolean {
  return IMAGE_ID_RE.test(value);
}

/**
 * Splits the registry off as Docker does: the first component is a registry when it contains
 * `.` or `:`, is `localhost`, or has uppercase letters (repository paths never do). A single
 * Docker Hub component gets the `library/` namespace of official images.
 */
function splitRegistry(input: string): { registry: string; remainder: string } {
  const slash = input.indexOf('/');
  if (slash === -1) return { registry: DEFAULT_REGISTRY, remainder: OFFICIAL_PREFIX + input };
  const first = input.slice(0, slash);
  const rest = input.slice(slash + 1);
  let registry = DEFAULT_REGISTRY;
  let remainder = input;
  if (
    first === 'localhost' ||
    first === LEGACY_DEFAULT_REGISTRY ||
    /[.:]/.test(first) ||
    first.toLowerCase() !== first
  ) {
    registry = normalizeRegistry(first);
    remainder = rest;
  }
  if (registry === DEFAULT_REGISTRY && !remainder.includes('/')) {
    remainder = OFFICIAL_PREFIX + remainder;
  }
  return { registry, remainder };
}

function looksLikeDigest(value: string): boolean {
  return value.includes(':');
}

/**
 * go-digest's validation, with its messages. Docker would also accept sha384 and sha512; the
 * cache stores sha256 only, so those are refused as unsupported rather than half-supported.
 */
function validateReferenceDigest(value: string): Digest {
  const colon = value.indexOf(':');
  if (colon <= 0 || colon === value.length - 1) {
    throw new InvalidReferenceError('invalid checksum digest format');
  }
  const algorithm = value.slice(0, colon);
  const encoded = value.slice(colon + 1);
  const bytes = HEX_BYTES_BY_ALGORITHM[algorithm];
  if (bytes === undefined) {
    throw new InvalidReferenceError(
      GO_DIGEST_RE.test(value) ? 'unsupported digest algorithm' : 'invalid checksum digest format',
    );
  }
  if (encoded.length !== bytes * 2) {
    throw new InvalidReferenceError('invalid checksum digest length');
  }
  if (!/^[a-f0-9]+$/.test(encoded)) {
    throw new InvalidReferenceError('invalid checksum digest format');
  }
  if (algorithm !== 'sha256') throw new InvalidReferenceError('unsupported digest algorithm');
  return value as Digest;
}

function suffix(ref: Reference): string {
  return (ref.tag !== undefined ? `:${ref.tag}` : '') + (ref.digest ? `@${ref.digest}` : '');
}
