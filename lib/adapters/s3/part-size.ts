import { ImageCacheError, InvalidArgumentError } from '../../errors.ts';

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;
/** S3's limits for multipart uploads (and UploadPartCopy ranges). */
export const MIN_PART_SIZE = 5 * MiB;
export const MAX_PART_SIZE = 5 * GiB;
export const MAX_PARTS = 10_000;
/** The largest object S3 stores, and the largest a single CopyObject may copy. */
export const MAX_OBJECT_SIZE = 5 * 1024 * GiB;
export const MAX_COPY_OBJECT_SIZE = 5 * GiB;

export interface PartSizing {
  /** Floor for parts when the size is known, and the single-PutObject threshold. */
  partSize: number;
  /** Parts when the length is unknown: 16 MiB reaches 156 GiB within 10,000 parts. */
  unknownSizePartSize: number;
}

export const DEFAULT_PART_SIZING: PartSizing = {
  partSize: 8 * MiB,
  unknownSizePartSize: 16 * MiB,
};

/**
 * The part size for an upload: the configured floor, grown (in whole MiB) when the expected
 * size would otherwise need more than 10,000 parts.
 */
export function choosePartSize(expectedSize: number | undefined, sizing: PartSizing): number {
  if (expectedSize === undefined) return sizing.unknownSizePartSize;
  if (expectedSize > MAX_OBJECT_SIZE) {
    throw new ImageCacheError(
      'PAYLOAD_TOO_LARGE',
      `blob of ${expectedSize} bytes exceeds the S3 object limit of ${MAX_OBJECT_SIZE} bytes`,
    );
  }
  const needed = Math.ceil(Math.ceil(expectedSize / MAX_PARTS) / MiB) * MiB;
  return Math.min(MAX_PART_SIZE, Math.max(sizing.partSize, needed));
}

/** Checks configured sizes once, so a bad setting fails at construction, not mid-upload. */
export function validatePartSizing(sizing: PartSizing): PartSizing {
  validatePartSize(sizing.partSize, 'partSize');
  validatePartSize(sizing.unknownSizePartSize, 'unknownSizePartSize');
  return sizing;
}

export function validatePartSize(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value < MIN_PART_SIZE || value > MAX_PART_SIZE) {
    throw new InvalidArgumentError(
      `S3 ${name} must be a whole number of bytes from ${MIN_PART_SIZE} to ${MAX_PART_SIZE}, got ${value}`,
    );
  }
  return value;
}

/**
 * Inclusive byte ranges that copy an object of `size` bytes in at most 10,000 parts of at
 * least `minPartSize` (UploadPartCopy, for objects above the 5 GiB CopyObject limit).
 */
export function copyRanges(size: number, minPartSize: number): { start: number; end: number }[] {
  const partSize = Math.min(
    MAX_PART_SIZE,
    Math.max(minPartSize, Math.ceil(Math.ceil(size / MAX_PARTS) / MiB) * MiB),
  );
  const ranges: { start: number; end: number }[] = [];
  for (let start = 0; start < size; start += partSize) {
    ranges.push({ start, end: Math.min(size, start + partSize) - 1 });
  }
  return ranges;
}
