/**
 * Pins: the cache's counterpart of "a container uses this image". A pin holds one image manifest
 * (resolved when pinned, so it does not follow a tag that moves later); `rm` without force and
 * every prune and retention pass leave a pinned image alone. An expired pin protects nothing and
 * is deleted the next time anyone looks at the pins.
 */
import { type Digest, digestHex } from './digest.ts';
import { parseDuration } from './duration.ts';
import { InvalidArgumentError, NotFoundError } from './errors.ts';
import type { ImageCatalog, PinRecord } from './ports/image-catalog.ts';
import { familiarString, looksLikeImageId, parseReference, withDefaultTag } from './reference.ts';
import { fullRef, resolveNamed } from './removal/refs.ts';

/**
 * The pins that still protect something. Expired ones are deleted on the way, because the
 * catalog's deleteManifestIfUnreferenced counts every pin; one renewed meanwhile is put back.
 */
export async function activePins(catalog: ImageCatalog, now: number): Promise<PinRecord[]> {
  const active: PinRecord[] = [];
  for (const pin of await catalog.listPins()) {
    if (!isExpired(pin, now)) {
      active.push(pin);
      continue;
    }
    const removed = await catalog.deletePin(pin.name);
    if (removed && !isExpired(removed, now)) await catalog.putPin(removed);
  }
  return active;
}

export function isExpired(pin: PinRecord, now: number): boolean {
  return pin.expiresAt !== undefined && pin.expiresAt <= now;
}

/** The pins holding any of `manifests`, oldest first so messages name the same pin each time. */
export function pinsHolding(pins: readonly PinRecord[], manifests: readonly Digest[]): PinRecord[] {
  const wanted = new Set<string>(manifests);
  return pins
    .filter((p) => wanted.has(p.manifest))
    .sort((a, b) => a.createdAt - b.createdAt || a.name.localeCompare(b.name));
}

/** `nginx:1 (release 42)`: how conflict messages name a pin, as Docker names a container. */
export function describePin(pin: PinRecord): string {
  const name = pin.name.startsWith('sha256:') ? digestHex(pin.name as Digest).slice(0, 12) : '';
  const shown = name || familiarPinName(pin.name);
  return pin.note ? `${shown} (${pin.note})` : shown;
}

export interface PinOptions {
  note?: string;
  /** A duration from now (`24h`, `7d`) or an RFC 3339 time. */
  expires?: string;
}

/**
 * Pins what `name` resolves to now. A reference is stored in full (`docker.io/library/nginx:1`),
 * an ID as the full image ID; pinning the same name again replaces note and expiry.
 */
export async function pinImage(
  catalog: ImageCatalog,
  name: string,
  options: PinOptions,
  now: number,
): Promise<{ pin: PinRecord; created: boolean }> {
  const expiresAt = options.expires ? parseExpiry(options.expires, now) : undefined;
  const note = options.note ?? '';
  if (note.length > 1024) throw new InvalidArgumentError('note must be at most 1024 characters');
  const named = await resolveNamed(catalog, name);
  const pinName = named.ref ? fullRef(named.ref) : named.byId ? named.view.id : fullName(name);
  const existing = (await activePins(catalog, now)).some((p) => p.name === pinName);
  const pin: PinRecord = {
    name: pinName,
    manifest: named.manifest,
    note,
    createdAt: now,
    ...(expiresAt !== undefined && { expiresAt }),
  };
  await catalog.putPin(pin);
  return { pin, created: !existing };
}

/**
 * Removes a pin by the name it was stored under, by the reference as the user types it
 * (`nginx:1`), or by an image ID or prefix for pins made by ID.
 */
export async function unpinImage(catalog: ImageCatalog, name: string): Promise<PinRecord> {
  const candidates = [name];
  const full = tryFullName(name);
  if (full) candidates.push(full);
  if (looksLikeImageId(name)) {
    const prefix = `sha256:${name.replace(/^sha256:/, '')}`;
    const matches = (await catalog.listPins()).filter((p) => p.name.startsWith(prefix));
    if (matches.length > 1) {
      throw new InvalidArgumentError(`pin ${name} is ambiguous: it matches ${matches.length} pins`);
    }
    if (matches[0]) candidates.push(matches[0].name);
  }
  for (const candidate of candidates) {
    const removed = await catalog.deletePin(candidate);
    if (removed) return removed;
  }
  throw new NotFoundError(`No such pin: ${name}`);
}

/** GET /cache/pins: one entry per active pin, with the image it holds. */
export async function listPinViews(catalog: ImageCatalog, now: number) {
  const pins = await activePins(catalog, now);
  return Promise.all(
    pins.map(async (pin) => {
      const manifest = await catalog.getManifest(pin.manifest);
      return {
        Name: pin.name,
        Id: manifest?.image?.configDigest ?? '',
        Manifest: pin.manifest,
        Note: pin.note,
        Created: new Date(pin.createdAt).toISOString(),
        Expires: pin.expiresAt === undefined ? null : new Date(pin.expiresAt).toISOString(),
      };
    }),
  );
}

/** `24h` from now, or an absolute RFC 3339 time; a time already past is refused. */
export function parseExpiry(text: string, now: number): number {
  const value = text.trim();
  let at: number;
  if (/^\d{4}-\d{2}-\d{2}T/.test(value)) {
    if (!/(Z|[+-]\d{2}:\d{2})$/i.test(value)) {
      throw new InvalidArgumentError(
        `invalid expires ${JSON.stringify(text)}: an RFC 3339 time needs a zone (Z or +01:00)`,
      );
    }
    at = Date.parse(value);
    if (Number.isNaN(at)) {
      throw new InvalidArgumentError(`invalid expires ${JSON.stringify(text)}: not a valid time`);
    }
  } else {
    at = now + parseDuration(value);
  }
  if (at <= now) {
    throw new InvalidArgumentError(
      `invalid expires ${JSON.stringify(text)}: it is not in the future`,
    );
  }
  return at;
}

function fullName(name: string): string {
  return tryFullName(name) ?? name;
}

function tryFullName(name: string): string | undefined {
  try {
    const ref = withDefaultTag(parseReference(name));
    return ref.digest
      ? `${ref.registry}/${ref.repository}@${ref.digest}`
      : `${ref.registry}/${ref.repository}:${ref.tag}`;
  } catch {
    return undefined;
  }
}

function familiarPinName(name: string): string {
  try {
    return familiarString(parseReference(name));
  } catch {
    return name;
  }
}
