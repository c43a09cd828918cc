import type { Digest } from '../digest.ts';
import { BlobNotLiveError } from '../errors.ts';
import type { ImageSource, PresentBlob } from '../import/image-source.ts';
import { MediaType } from '../media-types.ts';
import type { Descriptor } from '../model.ts';
import type { PlannedImage, StoredMember } from './formats.ts';

/** What the archive scan offers a source: its stored members, and recording one live again. */
export interface StoredMembers {
  memberByDigest(digest: Digest): StoredMember | undefined;
  record(member: StoredMember, now: number): Promise<void>;
}

/**
 * An image of a loaded archive (any of the tarball formats or an OCI layout) as an ImageSource.
 * Its blobs were stored and recorded live while the archive streamed, and the plan already
 * checked config, layers and diff_ids, so the first ask costs no I/O; only a blob the collector
 * took before the commit is recorded again (its bytes are still in the store, or the load is
 * refused: the archive cannot be read twice).
 */
export function archiveSource(
  image: PlannedImage,
  members: StoredMembers,
  now: () => number,
): ImageSource {
  const sizes = new Map<Digest, number | undefined>(
    image.layers.map((l) => [l.digest, l.fileBytes]),
  );
  return {
    manifest: image.manifest,
    ...(image.index && { index: image.index }),
    sourceDigest: image.source,
    ...(image.platform !== undefined && { platform: image.platform }),
    config: {
      mediaType: MediaType.ociConfig,
      digest: image.config.digest,
      size: image.config.size,
    },
    layers: image.layers,
    async ensureBlob(descriptor: Descriptor, options): Promise<PresentBlob> {
      if (options.again) {
        const member = members.memberByDigest(descriptor.digest);
        if (!member) throw new BlobNotLiveError([descriptor.digest]);
        await members.record(member, now());
      }
      // Written from the archive by this load, whether or not the cache held them before.
      const unpackedSize = sizes.get(descriptor.digest);
      return { existed: false, ...(unpackedSize !== undefined && { unpackedSize }) };
    },
    async readConfig() {
      return image.config.json;
    },
  };
}
