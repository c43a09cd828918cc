/**
 * The pins a watch with `pin=1` keeps (issue 15): one per watched platform, holding the image
 * the tag points to now and moved along when the tag moves, so retention keeps the current
 * image and lets the old one go. They carry WATCH_PIN_NOTE: a pin of the same name the user
 * made is theirs, and the watch neither moves nor removes it.
 */
import type { Digest } from '../digest.ts';
import type { ImageCatalog, PinRecord } from '../ports/image-catalog.ts';
import type { WatchSettings } from '../ports/watch-store.ts';

export const WATCH_PIN_NOTE = 'kept by watch';

/**
 * Platform ('' for the default) -> pin name. One platform: the watched reference itself, as
 * `image-cache pin` would name it; several: the reference with `#os/arch` each.
 */
export function watchPinNames(
  watch: Pick<WatchSettings, 'name' | 'platforms'>,
): Map<string, string> {
  if (watch.platforms.length <= 1) return new Map([[watch.platforms[0] ?? '', watch.name]]);
  return new Map(watch.platforms.map((p) => [p, `${watch.name}#${p}`]));
}

/** The pins by name, as keepWatchPins compares against them. */
export type PinsByName = Map<string, PinRecord>;

export async function pinsByName(catalog: ImageCatalog): Promise<PinsByName> {
  return new Map((await catalog.listPins()).map((pin) => [pin.name, pin]));
}

/**
 * Points the watch's pins at `images` (platform -> image manifest); answers the pins written.
 * `existing` is the pins as read once for a whole pass (a pin listing per pinned watch would
 * read every pin again for each), kept current here as pins are written.
 */
export async function keepWatchPins(
  catalog: ImageCatalog,
  watch: Pick<WatchSettings, 'name' | 'platforms'>,
  images: ReadonlyMap<string, Digest>,
  now: number,
  existing: PinsByName,
): Promise<number> {
  let written = 0;
  for (const [platform, name] of watchPinNames(watch)) {
    const manifest = images.get(platform);
    const current = existing.get(name);
    if (!manifest || (current && !isWatchPin(current)) || current?.manifest === manifest) continue;
    const pin = { name, manifest, note: WATCH_PIN_NOTE, createdAt: now };
    await catalog.putPin(pin);
    existing.set(name, pin);
    written++;
  }
  return written;
}

/** Removes the watch's own pins (unwatch, or pin=0); a user's pin of the same name stays. */
export async function dropWatchPins(
  catalog: ImageCatalog,
  watch: Pick<WatchSettings, 'name' | 'platforms'>,
): Promise<number> {
  const names = new Set(watchPinNames(watch).values());
  let removed = 0;
  for (const pin of await catalog.listPins()) {
    if (!names.has(pin.name) || !isWatchPin(pin)) continue;
    const gone = await catalog.deletePin(pin.name);
    // Replaced by the user between the listing and the delete: theirs now, put it back.
    if (gone && !isWatchPin(gone)) await catalog.putPin(gone);
    else if (gone) removed++;
  }
  return removed;
}

function isWatchPin(pin: PinRecord): boolean {
  return pin.note === WATCH_PIN_NOTE && pin.expiresAt === undefined;
}
