/**
 * `DELETE /images/{name}` with moby's semantics (daemon/images/image_delete.go), on the catalog:
 * removing a name untags; removing the last name deletes the image's manifest records; by ID an
 * image named in several repositories needs force. Pins play the part of stopped containers: a
 * soft conflict that force overrides (and force removes the pins, which would otherwise keep the
 * manifest records).
 *
 * Nothing here deletes blob bytes: the outcome lists the blobs of the deleted manifests, and the
 * caller hands them to the collector, which decides under the blob state machine whether each is
 * still needed by another image or an in-flight pull.
 */
import { type Digest, shortId } from '../digest.ts';
import { ConflictError, NotFoundError } from '../errors.ts';
import { findImageView, type ImageView } from '../images.ts';
import { activePins, describePin, pinsHolding } from '../pins.ts';
import type { ImageCatalog, PinRecord } from '../ports/image-catalog.ts';
import {
  familiarRef,
  fullRef,
  type ImageRef,
  isSingleReference,
  refsOf,
  resolveNamed,
  sameRef,
} from './refs.ts';

/** One entry of Docker's `image.DeleteResponse` list. */
export type DeleteResponseItem = { Untagged: string } | { Deleted: string };

export interface RemovalOutcome {
  items: DeleteResponseItem[];
  /** Blobs of the manifest records deleted: candidates for the collector, deduplicated. */
  freed: Digest[];
  /** Image IDs whose records were all deleted. */
  deletedImages: Digest[];
}

/**
 * Accumulates what one request removed. Prune and retention run many removals through one
 * instance, so the response and the collector's candidate set cover them all.
 */
export class ImageRemoval {
  readonly #catalog: ImageCatalog;
  readonly #pins: PinRecord[];
  readonly #items: DeleteResponseItem[] = [];
  readonly #freed = new Set<Digest>();
  readonly #deleted: Digest[] = [];
  /** Index digests that lost a name: deleted at the end if nothing else names them. */
  readonly #indexes = new Set<Digest>();
  /** Names this removal took away (full form), so a stale view does not count them. */
  readonly #removed = new Set<string>();

  private constructor(catalog: ImageCatalog, pins: PinRecord[]) {
    this.#catalog = catalog;
    this.#pins = pins;
  }

  /** Reads the active pins once (removing expired ones, which would otherwise hold manifests). */
  static async start(catalog: ImageCatalog, now: number): Promise<ImageRemoval> {
    return new ImageRemoval(catalog, await activePins(catalog, now));
  }

  wasRemoved(ref: ImageRef): boolean {
    return this.#removed.has(fullRef(ref));
  }

  /** The names of `view` this removal has not taken away yet. */
  #refsOf(view: ImageView): ImageRef[] {
    return refsOf(view).filter((r) => !this.wasRemoved(r));
  }

  pinsOf(view: ImageView): PinRecord[] {
    return pinsHolding(
      this.#pins,
      view.manifests.map((m) => m.digest),
    );
  }

  /** `docker rmi [-f] NAME`. */
  async remove(name: string, force: boolean): Promise<void> {
    const named = await resolveNamed(this.#catalog, name);
    if (named.byId) {
      await this.removeById(named.view, force);
      return;
    }
    if (!named.ref) throw new NotFoundError(`No such image: ${name}`);
    await this.removeByRef(named.view, named.ref, force, name);
  }

  /**
   * Removes one name of `view`. Untagging the last tag of a repository also drops that
   * repository's digest references; removing the last name deletes the image.
   */
  async removeByRef(view: ImageView, target: ImageRef, force: boolean, typed: string) {
    let refs = this.#refsOf(view);
    const pin = this.pinsOf(view)[0];
    if (!force && pin && isSingleReference(refs)) {
      // Untagging would leave a dangling image that only the pin keeps: make the user say so.
      throw new ConflictError(
        `conflict: unable to remove repository reference ${JSON.stringify(typed)} (must force) - ` +
          `image ${shortId(view.id)} is pinned by ${describePin(pin)}`,
      );
    }
    if (!(await this.#untag(target))) throw new NotFoundError(`No such image: ${typed}`);
    refs = refs.filter((r) => !sameRef(r, target));
    if (
      target.kind === 'tag' &&
      !refs.some((r) => r.kind === 'tag' && r.repository === target.repository)
    ) {
      const digests = refs.filter((r) => r.kind === 'digest' && r.repository === target.repository);
      for (const ref of digests) await this.#untag(ref);
      refs = refs.filter((r) => !digests.includes(r));
    }
    if (refs.length > 0) return;
    await this.#deleteImage(view, force, true);
  }

  /** Removes the image by ID: its names go too when they are all in one repository, or forced. */
  async removeById(view: ImageView, force: boolean): Promise<void> {
    const refs = this.#refsOf(view);
    if (isSingleReference(refs)) {
      const pin = this.pinsOf(view)[0];
      if (!force && pin) throw conflict(view, `image is pinned by ${describePin(pin)}`);
      for (const ref of refs) await this.#untag(ref);
    }
    await this.#deleteImage(view, force, false);
  }

  /**
   * Retention's removal: every name goes, as with force, but pins are honoured rather than
   * removed. Answers whether the image was deleted.
   */
  async evict(view: ImageView): Promise<boolean> {
    if (this.pinsOf(view).length > 0) return false;
    return this.#deleteImage(view, true, false, false);
  }

  /** Deletes index records that lost their last name; call once after the removals. */
  async finish(): Promise<RemovalOutcome> {
    for (const digest of this.#indexes) {
      const record = await this.#catalog.getManifest(digest);
      if (record && !record.image) await this.#catalog.deleteManifestIfUnreferenced(digest);
    }
    this.#indexes.clear();
    return {
      items: [...this.#items],
      freed: [...this.#freed],
      deletedImages: [...this.#deleted],
    };
  }

  /**
   * moby's imageDeleteHelper. `quiet` is the path after the last name was removed: a conflict
   * that appeared meanwhile (a concurrent pull re-tagged it, a pin was added) leaves the image
   * in place without an error, as Docker leaves an image a container started using.
   */
  async #deleteImage(
    view: ImageView,
    force: boolean,
    quiet: boolean,
    dropPins = force,
  ): Promise<boolean> {
    // Re-read: a pull may have named the image since it was resolved.
    const current = await findImageView(this.#catalog, view.id);
    if (!current) return false;
    const refs = refsOf(current);
    const pins = this.pinsOf(current);
    if (!force) {
      if (refs.length > 0) {
        if (quiet) return false;
        throw conflict(current, 'image is referenced in multiple repositories');
      }
      if (pins[0]) {
        if (quiet) return false;
        throw conflict(current, `image is pinned by ${describePin(pins[0])}`);
      }
    }
    if (dropPins) for (const pin of pins) await this.#catalog.deletePin(pin.name);
    for (const ref of refs) await this.#untag(ref);
    let deleted = 0;
    for (const manifest of current.manifests) {
      if (!(await this.#catalog.deleteManifestIfUnreferenced(manifest.digest))) continue;
      deleted++;
      for (const blob of manifest.blobs) this.#freed.add(blob);
    }
    // A record that survived was named again concurrently: the image lives on.
    if (deleted < current.manifests.length) return false;
    this.#items.push({ Deleted: current.id });
    this.#deleted.push(current.id);
    return true;
  }

  async #untag(ref: ImageRef): Promise<boolean> {
    const removed =
      ref.kind === 'tag'
        ? await this.#catalog.deleteTag(ref.repository, ref.tag)
        : await this.#catalog.deleteDigestRef(ref.repository, ref.digest);
    if (!removed) return false;
    this.#removed.add(fullRef(ref));
    this.#items.push({ Untagged: familiarRef(ref) });
    const index = 'source' in removed ? removed.source : removed.digest;
    if (index !== removed.manifest) this.#indexes.add(index);
    return true;
  }
}

/** `DELETE /images/{name}`: one removal, finished. */
export async function removeImage(
  catalog: ImageCatalog,
  name: string,
  options: { force: boolean; now: number },
): Promise<RemovalOutcome> {
  const removal = await ImageRemoval.start(catalog, options.now);
  try {
    await removal.remove(name, options.force);
  } catch (error) {
    // Whatever was untagged before the failure still lets go of its index records.
    await removal.finish();
    throw error;
  }
  return removal.finish();
}

function conflict(view: ImageView, reason: string): ConflictError {
  return new ConflictError(
    `conflict: unable to delete ${shortId(view.id)} (must be forced) - ${reason}`,
  );
}
