import {
  AbortMultipartUploadCommand,
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  type S3Client,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import { ImageCacheError } from '../../errors.ts';
import { s3Call } from './errors.ts';
import { copyRanges } from './part-size.ts';

export interface CopyOptions {
  client: S3Client;
  bucket: string;
  /** Objects up to this size use one CopyObject (S3 allows 5 GiB); larger ones UploadPartCopy. */
  maxSingleCopySize: number;
  /** Smallest range of one UploadPartCopy; grown to stay within 10,000 parts. */
  copyPartSize: number;
  /** UploadPartCopy requests in flight at once; they move no bytes through this process. */
  concurrency: number;
}

/** Copies `from` to `to` inside the bucket, server-side. `size` is the object's length. */
export async function copyWithinBucket(
  from: string,
  to: string,
  size: number,
  options: CopyOptions,
): Promise<void> {
  const { client, bucket } = options;
  const copySource = `${bucket}/${from.split('/').map(encodeURIComponent).join('/')}`;
  if (size <= options.maxSingleCopySize) {
    await s3Call(
      client.send(new CopyObjectCommand({ Bucket: bucket, Key: to, CopySource: copySource })),
      'CopyObject',
      to,
    );
    return;
  }
  const created = await s3Call(
    client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: to })),
    'CreateMultipartUpload',
    to,
  );
  const uploadId = created.UploadId;
  if (!uploadId)
    throw new ImageCacheError('INTERNAL', `S3 CreateMultipartUpload ${to}: no UploadId`);
  try {
    const ranges = copyRanges(size, options.copyPartSize);
    const parts: CompletedPart[] = new Array(ranges.length);
    let next = 0;
    let stopped = false;
    // A fixed pool of workers taking the next range: bounded concurrency without a queue; the
    // first failure stops the others from starting more.
    const worker = async () => {
      while (!stopped && next < ranges.length) {
        const index = next++;
        const range = ranges[index] as { start: number; end: number };
        const out = await s3Call(
          client.send(
            new UploadPartCopyCommand({
              Bucket: bucket,
              Key: to,
              UploadId: uploadId,
              PartNumber: index + 1,
              CopySource: copySource,
              CopySourceRange: `bytes=${range.start}-${range.end}`,
            }),
          ),
          'UploadPartCopy',
          to,
        ).catch((error: unknown) => {
          stopped = true;
          throw error;
        });
        parts[index] = { PartNumber: index + 1, ETag: out.CopyPartResult?.ETag };
      }
    };
    const workers = Array.from({ length: Math.min(options.concurrency, ranges.length) }, worker);
    const results = await Promise.allSettled(workers);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    await s3Call(
      client.send(
        new CompleteMultipartUploadCommand({
          Bucket: bucket,
          Key: to,
          UploadId: uploadId,
          MultipartUpload: { Parts: parts },
        }),
      ),
      'CompleteMultipartUpload',
      to,
    );
  } catch (error) {
    await client
      .send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: to, UploadId: uploadId }))
      .catch(() => undefined);
    throw error;
  }
}
