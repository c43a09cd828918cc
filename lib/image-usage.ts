/**
 * The dashboard's image listing (`GET /cache/images`): every image with its names, size, last
 * use, the pins holding it and how often it was pulled. Read like `image ls` (the catalog's
 * entries, never a scan) plus the usage of the listed manifests by key and the pins' partition.
 */
import type { Digest } from './digest.ts';
import { listImageViews } from './images.ts';
import type { ImageCatalog, PinRecord } from './ports/image-catalog.ts';

export interface ImageUsage {
  /** The config digest: Docker's image ID. */
  Id: Digest;
  RepoTags: string[];
  RepoDigests: string[];
  /** The image manifests (one per format it was stored in) that make up the image. */
  Manifests: Digest[];
  Platform: string;
  /** Bytes of the files in all layers, as `docker image ls` shows. */
  Size: number;
  /** RFC 3339 from the config; empty when the config has none. */
  Created: string;
  /** RFC 3339: the latest use of any of its manifests (pull, registry GET, save). */
  LastUsed: string;
  /** Pulls of any of its manifests: Engine API pulls and registry-door manifest GETs. */
  Pulls: number;
  /** Pins holding it now (expired ones protect nothing and are left out). */
  Pins: { Name: string; Note: string; ExpiresAt: string | null }[];
}

export async function listImageUsage(catalog: ImageCatalog, now: number): Promise<ImageUsage[]> {
  const [views, pins] = await Promise.all([listImageViews(catalog), catalog.listPins()]);
  const usage = await catalog.manifestUsage(views.flatMap((v) => v.manifests.map((m) => m.digest)));
  const pinsOf = new Map<Digest, PinRecord[]>();
  for (const pin of pins) {
    if (pin.expiresAt !== undefined && pin.expiresAt <= now) continue;
    pinsOf.set(pin.manifest, [...(pinsOf.get(pin.manifest) ?? []), pin]);
  }
  return views.map((view) => {
    const digests = view.manifests.map((m) => m.digest);
    const used = digests.map((d) => usage.get(d));
    const lastUsed = Math.max(...used.map((u) => u?.lastUsedAt ?? 0));
    const { os, architecture, variant } = view.summary;
    return {
      Id: view.id,
      RepoTags: view.repoTags,
      RepoDigests: view.repoDigests,
      Manifests: digests,
      Platform: [os, architecture, variant].filter(Boolean).join('/'),
      Size: view.summary.size,
      Created: view.summary.created ?? '',
      LastUsed: new Date(lastUsed).toISOString(),
      Pulls: used.reduce((sum, u) => sum + (u?.pulls ?? 0), 0),
      Pins: digests
        .flatMap((d) => pinsOf.get(d) ?? [])
        .map((pin) => ({
          Name: pin.name,
          Note: pin.note,
          ExpiresAt: pin.expiresAt === undefined ? null : new Date(pin.expiresAt).toISOString(),
        })),
    };
  });
}
