/**
 * Which of a watch's platforms the catalog already holds at the digest the upstream names now:
 * the tag must name that digest (index or manifest), and each platform's image manifest must be
 * stored. Read from the catalog alone.
 */
import type { Digest } from '../digest.ts';
import { parseManifest, parsePlatform, selectPlatform } from '../manifest.ts';
import type { ImageCatalog, TagRecord } from '../ports/image-catalog.ts';

/** Platform ('' for the default) -> the stored image manifest; absent platforms need a pull. */
export async function storedImages(
  catalog: ImageCatalog,
  tag: TagRecord | undefined,
  upstreamDigest: Digest,
  platforms: readonly string[],
): Promise<Map<string, Digest>> {
  const found = new Map<string, Digest>();
  if (!tag || tag.source !== upstreamDigest) return found;
  const wanted = platforms.length > 0 ? platforms : [''];
  for (const platform of wanted) {
    const manifest = await imageFor(catalog, tag, platform);
    if (manifest && (await catalog.getManifest(manifest))) found.set(platform, manifest);
  }
  return found;
}

/** The platform's image manifest under the tag's source: the tag's own, or the index's child. */
async function imageFor(
  catalog: ImageCatalog,
  tag: TagRecord,
  platform: string,
): Promise<Digest | undefined> {
  // No platform asked: whatever the tag was pulled for serves, as a pull without --platform.
  if (platform === '' || tag.platform === platform || tag.source === tag.manifest) {
    return tag.manifest;
  }
  const index = await catalog.getManifest(tag.source);
  if (!index) return undefined;
  const parsed = parseManifest(index.raw, index.mediaType);
  if (parsed.kind !== 'index') return undefined;
  return selectPlatform(parsed, parsePlatform(platform))?.digest;
}
