import type { Digest } from '../digest.ts';
import { booleanFilter, type Filters, globToRegExp, matchesLabel } from '../filters.ts';
import { type HistoryEntry, type ImageConfig, parseImageConfig } from '../image-config.ts';
import type { ImageView } from '../images.ts';
import type { BlobStore } from '../ports/blob-store.ts';
import type { ImageCatalog } from '../ports/image-catalog.ts';

/** The Engine API's ImageSummary (GET /images/json), API 1.47 field names. */
export function imageSummary(view: ImageView, repoTags = view.repoTags) {
  return {
    Id: view.id,
    ParentId: '',
    RepoTags: repoTags,
    RepoDigests: view.repoDigests,
    Created: unixSeconds(view.summary.created),
    Size: view.summary.size,
    SharedSize: -1,
    Labels: view.summary.labels,
    Containers: -1,
  };
}

export const IMAGE_LIST_FILTERS = ['dangling', 'reference', 'label', 'before', 'since', 'until'];

/**
 * Applies `docker image ls` filters. A reference filter also narrows RepoTags to the matching
 * ones, as the daemon does.
 */
export function filterImages(views: ImageView[], filters: Filters, byName: Map<string, ImageView>) {
  const dangling = booleanFilter(filters, 'dangling');
  const patterns = (filters.get('reference') ?? []).map(globToRegExp);
  const labels = filters.get('label') ?? [];
  const before = filters.get('before')?.map((n) => byName.get(n));
  const since = filters.get('since')?.map((n) => byName.get(n));
  const out: ReturnType<typeof imageSummary>[] = [];
  for (const view of views) {
    const isDangling = view.repoTags.length === 0;
    if (dangling !== undefined && dangling !== isDangling) continue;
    if (!labels.every((l) => matchesLabel(view.summary.labels, l))) continue;
    const created = unixSeconds(view.summary.created);
    if (before?.some((b) => !b || created >= unixSeconds(b.summary.created))) continue;
    if (since?.some((s) => !s || created <= unixSeconds(s.summary.created))) continue;
    let repoTags = view.repoTags;
    if (patterns.length > 0) {
      repoTags = repoTags.filter((t) => patterns.some((p) => p.test(t) || p.test(nameOf(t))));
      if (repoTags.length === 0) continue;
    }
    out.push(imageSummary(view, repoTags));
  }
  return out.sort((a, b) => b.Created - a.Created || a.Id.localeCompare(b.Id));
}

/** GET /images/{name}/json, shaped as `docker image inspect` prints it. */
export async function imageInspect(view: ImageView, blobs: BlobStore) {
  const config = await readConfig(blobs, view.id);
  const lastTag = Math.max(0, ...view.tags.map((t) => t.updatedAt));
  return {
    Id: view.id,
    RepoTags: view.repoTags,
    RepoDigests: view.repoDigests,
    Parent: '',
    Comment: config.comment ?? '',
    Created: config.created ?? '',
    DockerVersion: config.docker_version ?? '',
    Author: config.author ?? '',
    Config: config.config ?? null,
    Architecture: config.architecture,
    ...(config.variant ? { Variant: config.variant } : {}),
    Os: config.os,
    ...(config['os.version'] ? { OsVersion: config['os.version'] } : {}),
    Size: view.summary.size,
    GraphDriver: { Data: null, Name: 'image-cache' },
    RootFS: { Type: config.rootfs.type || 'layers', Layers: config.rootfs.diff_ids },
    Metadata: { LastTagTime: lastTag ? new Date(lastTag).toISOString() : '0001-01-01T00:00:00Z' },
  };
}

/** GET /images/{name}/history: newest first, layer sizes from the cache's own count. */
export async function imageHistory(view: ImageView, blobs: BlobStore, catalog: ImageCatalog) {
  const config = await readConfig(blobs, view.id);
  const manifest = view.manifests[0]!;
  const layerDigests = manifest.blobs.slice(1);
  const layerSizes = await Promise.all(
    layerDigests.map(async (d) => (await catalog.getBlob(d))?.unpackedSize ?? 0),
  );
  const history: HistoryEntry[] =
    config.history && config.history.length > 0
      ? config.history
      : layerDigests.map(() => ({ created: config.created, created_by: '' }));
  let layer = 0;
  const rows = history.map((entry) => {
    const size = entry.empty_layer ? 0 : (layerSizes[layer++] ?? 0);
    return {
      Id: '<missing>',
      Created: unixSeconds(entry.created),
      CreatedBy: entry.created_by ?? '',
      Tags: null as string[] | null,
      Size: size,
      Comment: entry.comment ?? '',
    };
  });
  rows.reverse();
  if (rows[0]) {
    rows[0].Id = view.id;
    rows[0].Tags = view.repoTags.length > 0 ? view.repoTags : null;
  }
  return rows;
}

async function readConfig(blobs: BlobStore, digest: Digest): Promise<ImageConfig> {
  const chunks: Buffer[] = [];
  for await (const chunk of await blobs.read(digest)) chunks.push(chunk as Buffer);
  return parseImageConfig(Buffer.concat(chunks));
}

function unixSeconds(created: string | undefined): number {
  const ms = created ? Date.parse(created) : Number.NaN;
  return Number.isNaN(ms) ? 0 : Math.floor(ms / 1000);
}

/** `localhost:5000/app:1` -> `localhost:5000/app`; the colon of a port is not a tag. */
function nameOf(repoTag: string): string {
  const colon = repoTag.lastIndexOf(':');
  return colon > repoTag.lastIndexOf('/') ? repoTag.slice(0, colon) : repoTag;
}
