/**
 * Save through storage: the deterministic tarball of a save, written once per content to an
 * object store and handed out as a short-lived URL. An optional capability of a backend (the
 * AWS one has it, the embedded one does not): routes check for it rather than call a method
 * that would throw.
 */
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { ArchivePlan } from './archive.ts';
import { prepareSave, type SaveDeps, type SavedTarball } from './save.ts';

/** A tarball in storage and a URL to fetch it with. */
export interface SaveExport {
  url: string;
  /** The tarball's exact length. */
  size: number;
  /** When `url` stops working. */
  expires: Date;
}

export interface SaveExports {
  /** The export stored at `key`, with a fresh URL, when one of `size` bytes is there. */
  find(key: string, size: number): Promise<SaveExport | undefined>;
  /**
   * Streams the tarball to `key` (committed only when it ended cleanly) and signs a URL;
   * `onProgress` hears the bytes handed to storage so far.
   */
  export(
    key: string,
    size: number,
    open: () => Readable,
    onProgress?: (bytes: number) => void,
  ): Promise<SaveExport>;
}

/** A save resolved and checked, with the key and size its export has in storage. */
export interface PlannedExport {
  key: string;
  size: number;
  tarball: SavedTarball;
}

/**
 * The export key of a plan: sha256 over every entry's kind, name, size and content digest, in
 * order. The tar is a function of exactly these, so equal keys mean byte-identical tarballs.
 */
export function exportKeyOf(plan: ArchivePlan): string {
  const hash = createHash('sha256');
  for (const entry of plan.entries) {
    const content =
      entry.kind === 'directory'
        ? ['directory', entry.name, 0, '']
        : entry.kind === 'bytes'
          ? [
              'file',
              entry.name,
              entry.bytes.length,
              `sha256:${createHash('sha256').update(entry.bytes).digest('hex')}`,
            ]
          : ['file', entry.name, entry.size, entry.digest];
    hash.update(`${JSON.stringify(content)}\n`);
  }
  return hash.digest('hex');
}

/**
 * Resolves and checks the names as a streamed save does (404 for an unknown one, blobs
 * touched so GC keeps them while they are read) and derives the export's key: catalog reads
 * only, so a route can afford it before deciding whether the export needs a job.
 */
export async function planExport(deps: SaveDeps, names: string[]): Promise<PlannedExport> {
  const tarball = await prepareSave(deps, names);
  return { key: exportKeyOf(tarball.plan), size: tarball.contentLength, tarball };
}

/** The planned export in storage: the one of the same content if there is one, else written. */
export async function storeExport(
  exports: SaveExports,
  planned: PlannedExport,
  onProgress?: (bytes: number) => void,
): Promise<SaveExport> {
  const found = await exports.find(planned.key, planned.size);
  if (found) return found;
  return exports.export(planned.key, planned.size, () => planned.tarball.open(), onProgress);
}

export async function exportSave(
  deps: SaveDeps & { exports: SaveExports },
  names: string[],
): Promise<SaveExport> {
  return storeExport(deps.exports, await planExport(deps, names));
}

/** `?redirect=1` or `X-Image-Cache-Redirect: 1`: the client follows a redirect to storage. */
export function wantsRedirect(
  query: URLSearchParams,
  headers: Record<string, string | undefined>,
): boolean {
  const yes = (value: string | null | undefined) =>
    value !== null && value !== undefined && /^(1|true|yes)$/i.test(value.trim());
  return yes(query.get('redirect')) || yes(headers['x-image-cache-redirect']);
}
