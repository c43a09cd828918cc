import { describe, expect, it } from 'vitest';
import { s3Keys } from '../lib/adapters/s3/keys.ts';
import {
  choosePartSize,
  copyRanges,
  DEFAULT_PART_SIZING,
  GiB,
  MAX_PART_SIZE,
  MAX_PARTS,
  MiB,
} from '../lib/adapters/s3/part-size.ts';
import { digestHex, sha256 } from '../lib/digest.ts';
import { ImageCacheError } from '../lib/errors.ts';

describe('S3 part sizing and keys', () => {
  it.each([
    [undefined, 16 * MiB],
    [0, 8 * MiB],
    [100 * MiB, 8 * MiB],
    [80_000 * MiB, 8 * MiB],
    [80_000 * MiB + 1, 9 * MiB],
    [1024 * GiB, 105 * MiB],
  ])('chooses a part size for %s bytes: %s', (size, expected) => {
    expect(choosePartSize(size, DEFAULT_PART_SIZING)).toBe(expected);
  });

  it('always fits the largest object S3 stores in 10,000 parts', () => {
    const size = 5 * 1024 * GiB;
    const part = choosePartSize(size, DEFAULT_PART_SIZING);
    expect(part).toBeLessThanOrEqual(MAX_PART_SIZE);
    expect(Math.ceil(size / part)).toBeLessThanOrEqual(MAX_PARTS);
    expect(() => choosePartSize(size + 1, DEFAULT_PART_SIZING)).toThrow(ImageCacheError);
  });

  it.each([
    [5 * GiB + 1, 512 * MiB],
    [40 * GiB, 512 * MiB],
    [5 * 1024 * GiB, 512 * MiB],
  ])('covers %s bytes with UploadPartCopy ranges', (size, minPart) => {
    const ranges = copyRanges(size, minPart);
    expect(ranges.length).toBeLessThanOrEqual(MAX_PARTS);
    expect(ranges[0]?.start).toBe(0);
    expect(ranges.at(-1)?.end).toBe(size - 1);
    for (let i = 1; i < ranges.length; i++) {
      expect(ranges[i]?.start).toBe((ranges[i - 1]?.end ?? 0) + 1);
    }
    expect(ranges.every((r) => r.end - r.start + 1 <= MAX_PART_SIZE)).toBe(true);
  });

  it.each([
    ['', 'blobs/sha256/'],
    ['team', 'team/blobs/sha256/'],
    ['/team/cache/', 'team/cache/blobs/sha256/'],
  ])('derives keys under the prefix %j', (prefix, blobsPrefix) => {
    const keys = s3Keys(prefix);
    const digest = sha256('x');
    expect(keys.blob(digest)).toBe(`${blobsPrefix}${digestHex(digest)}`);
    expect(keys.digestOf(keys.blob(digest))).toBe(digest);
    expect(keys.digestOf(`${blobsPrefix}README`)).toBeUndefined();
    expect(keys.staging().startsWith(keys.stagingPrefix)).toBe(true);
  });
});
