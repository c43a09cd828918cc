import type { Digest } from '../digest.ts';
import { parseManifest } from '../manifest.ts';
import type { Platform, Reference } from '../model.ts';
import { formatReference } from '../reference.ts';

/**
 * Turns what registry clients fetch into catalog images. A client of the registry door asks
 * for a manifest and then for the blobs it lacks; the cache tags the image only once all its
 * content is stored (invariant 2), by running the ordinary pull for it in the background. That
 * pull joins the clients' downloads (one upstream GET per blob), fetches what no client asked
 * for (a daemon skips the layers it already has), and commits the tag.
 *
 * It starts once the clients went quiet about the image (no request for it in `quietMs`), so a
 * client always starts the downloads it streams, rather than joining one the fill started.
 * An index is served as it is; the fill runs for the platform manifest a client then asks for.
 */

export interface FillRunner {
  /** Pulls `ref` (for `platform` when it names an index) and commits it. */
  pull(ref: Reference, platform: Platform | undefined): Promise<unknown>;
  /** Whether a client's download of the blob is under way (the fill waits for it). */
  downloading?(digest: Digest): boolean;
}

interface Pending {
  ref: Reference;
  platform?: Platform;
  blobs: Set<Digest>;
  timer?: NodeJS.Timeout;
  /** When the first client asked: a fill waits for quiet, but never longer than MAX_WAIT_MS. */
  since: number;
}

/** A client retrying faster than the quiet period must not postpone its image's fill forever. */
const MAX_WAIT_MS = 10_000;

/** Where a manifest served by digest came from: the tag a client resolved, and its platform. */
interface Origin {
  ref: Reference;
  platform?: Platform;
  until: number;
}

const ORIGIN_MS = 10 * 60_000;
const ORIGINS_KEPT = 4096;

export class MirrorFills {
  readonly #runner: FillRunner;
  readonly #quietMs: number;
  readonly #pending = new Map<string, Pending>();
  /** Manifest digest -> the tag it was reached from (a HEAD by tag, an index's children). */
  readonly #origins = new Map<Digest, Origin>();
  readonly #running = new Set<Promise<unknown>>();
  readonly #sizes = new Map<Digest, number>();

  readonly #immediate: boolean;

  /**
   * `immediate`: start each fill when its manifest is served, and answer once it started (a
   * Lambda front: the function may freeze as soon as it answered, timers and all, so the fill
   * is a job a worker runs).
   */
  constructor(runner: FillRunner, options: { quietMs?: number; immediate?: boolean } = {}) {
    this.#runner = runner;
    this.#quietMs = options.quietMs ?? 2000;
    this.#immediate = options.immediate ?? false;
  }

  /** A client resolved a tag to a digest (containerd HEADs by tag, then GETs by digest). */
  tagResolved(ref: Reference, digest: Digest): void {
    if (ref.tag) this.#remember(digest, { ref, until: Date.now() + ORIGIN_MS });
  }

  /**
   * A client got a manifest. An index: its children remember where they came from. An image:
   * its blob sizes are kept (blob requests need them), and unless it is stored already a fill
   * is scheduled, under the tag it was reached by when that is known.
   */
  async manifestServed(
    ref: Reference,
    served: { digest: Digest; raw: Uint8Array; mediaType: string },
    options: { stored: boolean },
  ): Promise<void> {
    const origin = ref.digest ? this.#origins.get(ref.digest) : undefined;
    const named = origin && origin.until > Date.now() ? origin.ref : ref;
    let parsed: ReturnType<typeof parseManifest>;
    try {
      parsed = parseManifest(served.raw, served.mediaType);
    } catch {
      return; // Not something the cache pulls (an artifact of another kind): served as it is.
    }
    if (parsed.kind === 'index') {
      for (const child of parsed.manifests) {
        this.#remember(child.digest, {
          ref: named,
          ...(child.platform && { platform: child.platform }),
          until: Date.now() + ORIGIN_MS,
        });
      }
      return;
    }
    for (const blob of [parsed.config, ...parsed.layers]) this.#keepSize(blob.digest, blob.size);
    if (options.stored) return;
    // By tag, or by the digest the client named: the index's when it came through one (so the
    // pull stores the index too, and `name@<index digest>` resolves from the cache later).
    const target: Reference = named.tag
      ? { registry: named.registry, repository: named.repository, tag: named.tag }
      : {
          registry: named.registry,
          repository: named.repository,
          digest: named.digest ?? served.digest,
        };
    const key = `${formatReference(target)}|${served.digest}`;
    const blobs = new Set([parsed.config.digest, ...parsed.layers.map((l) => l.digest)]);
    if (this.#immediate) {
      await this.#runner.pull(target, origin?.platform);
      return;
    }
    const pending = this.#pending.get(key) ?? { ref: target, blobs, since: Date.now() };
    if (origin?.platform) pending.platform = origin.platform;
    this.#pending.set(key, pending);
    this.#arm(key, pending);
  }

  /** The size a served manifest gave a blob, if one did lately. */
  sizeOf(digest: Digest): number | undefined {
    return this.#sizes.get(digest);
  }

  /** A client asked for a blob: fills waiting for it wait a little longer. */
  blobRequested(digest: Digest): void {
    for (const [key, pending] of this.#pending) {
      if (pending.blobs.has(digest)) this.#arm(key, pending);
    }
  }

  /** Waits for fills under way (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.#running.size > 0 || [...this.#pending.values()].some((p) => p.timer)) {
      await Promise.allSettled([...this.#running]);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  #arm(key: string, pending: Pending): void {
    clearTimeout(pending.timer);
    const delay = Math.max(0, Math.min(this.#quietMs, pending.since + MAX_WAIT_MS - Date.now()));
    pending.timer = setTimeout(() => {
      // Clients still downloading the image's blobs: reading them as layers now would only
      // compete with them for the CPU. Look again later (not counted against MAX_WAIT_MS).
      if ([...pending.blobs].some((digest) => this.#runner.downloading?.(digest))) {
        pending.since = Date.now();
        this.#arm(key, pending);
        return;
      }
      this.#pending.delete(key);
      pending.timer = undefined;
      const run = this.#runner
        .pull(pending.ref, pending.platform)
        // A fill that fails (upstream gone, image refused) leaves the catalog as it was; the
        // client already has its bytes, and the next one tries again.
        .catch(() => {})
        .finally(() => this.#running.delete(run));
      this.#running.add(run);
    }, delay);
    pending.timer.unref();
  }

  #keepSize(digest: Digest, size: number): void {
    this.#sizes.delete(digest);
    this.#sizes.set(digest, size);
    while (this.#sizes.size > ORIGINS_KEPT) this.#sizes.delete(this.#sizes.keys().next().value!);
  }

  #remember(digest: Digest, origin: Origin): void {
    this.#origins.delete(digest);
    this.#origins.set(digest, origin);
    while (this.#origins.size > ORIGINS_KEPT) {
      this.#origins.delete(this.#origins.keys().next().value!);
    }
  }
}
