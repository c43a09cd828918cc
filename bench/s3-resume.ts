/**
 * `npm run bench:s3-resume`: what a resumed S3 blob write sends (issue 13). A write of a
 * 10-part and of a 100-part blob (5 MiB parts, on fauxqs) dies after 90% of its bytes, as a
 * worker at its timeout would; the next write of the same digest reads the whole source again
 * (the digest is checked over every byte) but uploads only the parts not stored yet. Without
 * resume that second write would upload the whole blob again, ten times more for the blob ten
 * times larger. The source is generated chunk by chunk, so this process never holds a blob.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { MiB } from '../lib/adapters/s3/part-size.ts';
import { S3BlobStore } from '../lib/adapters/s3-blob-store.ts';
import type { Digest } from '../lib/digest.ts';
import { recordCommands, type SentCommand } from '../test/support/s3-commands.ts';
import { startS3Server } from '../test/support/s3-server.ts';
import { log, seconds } from './support.ts';

const PART = 5 * MiB;
const BLOCK = randomBytes(MiB);

/** MiB `i` of a blob: the same random block, made unique by its index. */
function chunk(i: number): Buffer {
  const bytes = Buffer.from(BLOCK);
  bytes.writeUInt32BE(i, 0);
  return bytes;
}

/** The blob's first `mib` MiB, then a reset when `fails`. */
function source(mib: number, fails: boolean): Readable {
  return Readable.from(
    (function* () {
      for (let i = 0; i < mib; i++) yield chunk(i);
      if (fails) throw new Error('ECONNRESET (bench)');
    })(),
  );
}

function digestOf(mib: number): Digest {
  const hash = createHash('sha256');
  for (let i = 0; i < mib; i++) hash.update(chunk(i));
  return `sha256:${hash.digest('hex')}` as Digest;
}

const partBytes = (sent: SentCommand[]) =>
  sent
    .filter((s) => s.command === 'UploadPartCommand')
    .reduce((sum, s) => sum + Number(s.input.ContentLength), 0);

const server = await startS3Server();
const lines: string[] = [];
try {
  for (const parts of [10, 100]) {
    const mib = (parts * PART) / MiB;
    const digest = digestOf(mib);
    const bucket = await server.createBucket();
    const client = server.client();
    const sent = recordCommands(client);
    const store = new S3BlobStore({ client, bucket, partSize: PART });
    const expected = { digest, size: mib * MiB };
    await store.write(source(Math.floor(mib * 0.9), true), expected).catch(() => undefined);
    const first = partBytes(sent);
    sent.length = 0;
    const started = performance.now();
    await store.write(source(mib, false), expected);
    const resumedMs = performance.now() - started;
    const resumed = partBytes(sent);
    const requests = sent.length;
    lines.push(
      `${parts} parts (${mib} MiB): the failed write stored ${first / MiB} MiB; the resumed write ` +
        `uploaded ${resumed / MiB} MiB in ${requests} requests, ${seconds(resumedMs)} s ` +
        `(starting over: ${mib} MiB)`,
    );
    log(lines.at(-1) ?? '');
    await store.delete(digest);
    await server.removeBucket(bucket);
    client.destroy();
  }
} finally {
  await server.stop();
}
process.stdout.write(`${lines.join('\n')}\n`);
