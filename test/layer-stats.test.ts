import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { PassThrough, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { sha256 } from '../lib/digest.ts';
import { countLayerFiles, type LayerStats } from '../lib/layer-stats.ts';
import {
  EMPTY_LAYER_DIFF_ID,
  type GeneratedLayer,
  generateLayer,
  openBlob,
} from './support/image-factory.ts';
import { tempDirs } from './support/tmp.ts';

const temps = tempDirs('layer-stats');
afterAll(() => temps.cleanupAll());

/** Feeds `bytes` in chunks of `chunkSize` (tiny chunks split the magic bytes). */
async function statsOf(source: Readable | Buffer, chunkSize = 64 * 1024): Promise<LayerStats> {
  const counter = countLayerFiles();
  const input =
    source instanceof Buffer
      ? Readable.from(
          (function* () {
            for (let i = 0; i < source.length; i += chunkSize)
              yield source.subarray(i, i + chunkSize);
          })(),
        )
      : source;
  await pipeline(input, counter.stream);
  return counter.result;
}

function expectMatches(stats: LayerStats, layer: GeneratedLayer) {
  expect(stats.compression).toBe(layer.compression);
  expect(stats.fileBytes).toBe(layer.fileBytes);
  expect(stats.fileCount).toBe(layer.fileCount);
  expect(stats.diffId).toBe(layer.diffId);
  expect(stats.uncompressedSize).toBe(layer.tarSize);
}

describe('countLayerFiles', () => {
  it.each([
    ['gzip', { compression: 'gzip' as const, symlink: true }],
    ['plain tar', { compression: 'none' as const, symlink: true }],
    ['gzip with a multi-MiB file', { files: [3 * 1024 * 1024 + 7, 0, 511, 512, 513] }],
  ])('sums regular files and hashes the tar of a %s layer', async (_name, spec) => {
    const layer = await generateLayer(`stats-${_name}`, spec);
    expectMatches(await statsOf(layer.bytes!), layer);
  });

  it('reads magic bytes split over one-byte chunks', async () => {
    for (const compression of ['gzip', 'none'] as const) {
      const layer = await generateLayer(`split-${compression}`, { compression });
      expectMatches(await statsOf(layer.bytes!, 1), layer);
    }
  });

  it("gives Docker's empty layer 0 bytes and its well-known diff_id", async () => {
    for (const compression of ['gzip', 'none'] as const) {
      const layer = await generateLayer('empty', { empty: true, compression });
      const stats = await statsOf(layer.bytes!);
      expect(stats.fileBytes).toBe(0);
      expect(stats.fileCount).toBe(0);
      expect(stats.diffId).toBe(EMPTY_LAYER_DIFF_ID);
    }
  });

  it('agrees with a tar written by GNU tar (hard link and symlink count 0)', async () => {
    const dir = await temps.create();
    await writeFile(dir.file('a.bin'), Buffer.alloc(1000, 1));
    await writeFile(dir.file('b.bin'), Buffer.alloc(70_000, 2));
    const sh = `cd ${dir.path} && mkdir -p root/sub && mv a.bin b.bin root/sub/ && ln root/sub/a.bin root/hard && ln -s sub/b.bin root/soft && tar --format=gnu -cf layer.tar root && gzip -k layer.tar`;
    await promisify(execFile)('sh', ['-c', sh]);
    const plain = await statsOf(createReadStream(dir.file('layer.tar')));
    expect(plain).toMatchObject({ compression: 'none', fileBytes: 71_000, fileCount: 2 });
    const { readFile } = await import('node:fs/promises');
    expect(plain.diffId).toBe(sha256(await readFile(dir.file('layer.tar'))));
    const gzipped = await statsOf(createReadStream(dir.file('layer.tar.gz')));
    expect(gzipped).toEqual({ ...plain, compression: 'gzip' });
  });

  it('streams a layer from disk with the same result as from memory', async () => {
    const dir = await temps.create();
    const layer = await generateLayer(
      'on-disk',
      { totalBytes: 8 * 1024 * 1024, fileCount: 3 },
      { dir: dir.path },
    );
    expect(layer.bytes).toBeUndefined();
    expectMatches(await statsOf(openBlob(layer)), layer);
  });

  it('rejects a corrupt gzip stream instead of hanging, and still finishes its stream', async () => {
    const layer = await generateLayer('corrupt', { files: [200_000] });
    const corrupt = Buffer.from(layer.bytes!);
    for (let i = 100; i < 400; i++) corrupt[i] = corrupt[i]! ^ 0xff;
    await expect(statsOf(corrupt)).rejects.toThrow();
  });

  it('rejects a truncated gzip and a truncated tar', async () => {
    const gz = await generateLayer('truncated', { files: [100_000] });
    await expect(statsOf(gz.bytes!.subarray(0, gz.size / 2))).rejects.toThrow();
    const plain = await generateLayer('truncated', { files: [100_000], compression: 'none' });
    await expect(statsOf(plain.bytes!.subarray(0, 700))).rejects.toThrow();
  });

  it('rejects gzip of something that is not a tar', async () => {
    await expect(statsOf(gzipSync(Buffer.alloc(4096, 'x')))).rejects.toThrow();
  });

  it('gives up on zstd without reading it', async () => {
    const zstd = Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.alloc(100_000, 7)]);
    expect(await statsOf(zstd)).toEqual({
      compression: 'zstd',
      fileBytes: undefined,
      fileCount: undefined,
      diffId: undefined,
      uncompressedSize: undefined,
    });
  });

  it('rejects when the stream is destroyed before its end', async () => {
    const counter = countLayerFiles();
    const layer = await generateLayer('destroyed', { files: [100_000] });
    counter.stream.write(layer.bytes!.subarray(0, 1000));
    counter.stream.destroy();
    await expect(counter.result).rejects.toThrow(/before its end/);
  });

  it('as a tee, never stalls the main stream when the layer is corrupt', async () => {
    const layer = await generateLayer('tee', { files: [4 * 1024 * 1024] });
    const corrupt = Buffer.from(layer.bytes!);
    corrupt.fill(0, 50_000, 60_000);
    const counter = countLayerFiles();
    const tee = new PassThrough();
    tee.pipe(counter.stream);
    let received = 0;
    const sink = new Writable({
      write(chunk: Buffer, _enc, callback) {
        received += chunk.length;
        callback();
      },
    });
    const chunks = (function* () {
      for (let i = 0; i < corrupt.length; i += 16 * 1024) yield corrupt.subarray(i, i + 16 * 1024);
    })();
    await pipeline(Readable.from(chunks), tee, sink);
    expect(received).toBe(corrupt.length);
    await expect(counter.result).rejects.toThrow();
  });
});
