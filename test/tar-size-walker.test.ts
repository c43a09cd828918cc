import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { describe, expect, it } from 'vitest';
import { TarSizeWalker } from '../lib/tar-size-walker.ts';

async function walk(bytes: Buffer, chunk = 777): Promise<TarSizeWalker> {
  const walker = new TarSizeWalker();
  const pieces: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += chunk) pieces.push(bytes.subarray(i, i + chunk));
  await pipeline(Readable.from(pieces), walker);
  return walker;
}

async function pack(
  entries: Array<{
    name: string;
    size?: number;
    type?: 'file' | 'directory' | 'symlink';
    linkname?: string;
  }>,
) {
  const p = tar.pack();
  const chunks: Buffer[] = [];
  p.on('data', (c: unknown) => chunks.push(c as Buffer));
  for (const e of entries) {
    const header = { name: e.name, type: e.type ?? 'file', linkname: e.linkname };
    if (header.type === 'file') p.entry(header, Buffer.alloc(e.size ?? 0, 7));
    else p.entry(header);
  }
  p.finalize();
  await new Promise<void>((resolve) => p.on('end', () => resolve()));
  return Buffer.concat(chunks);
}

describe('TarSizeWalker', () => {
  it.each([1, 100, 512, 4096, 1 << 20])(
    'counts regular files whatever the chunking (%i)',
    async (chunk) => {
      const bytes = await pack([
        { name: 'a', size: 1 },
        { name: 'dir', type: 'directory' },
        { name: 'dir/b', size: 1000 },
        { name: 'link', type: 'symlink', linkname: 'dir/b' },
        { name: `${'long-name/'.repeat(20)}c`, size: 513 },
      ]);
      const walker = await walk(bytes, chunk);
      expect([walker.fileCount, walker.fileBytes]).toEqual([3, 1514]);
    },
  );

  it('agrees with GNU tar, hard links and long names included', async () => {
    expect.assertions(4);
    const dir = mkdtempSync(join(tmpdir(), 'walker-'));
    mkdirSync(join(dir, 'root/sub'), { recursive: true });
    writeFileSync(join(dir, 'root/sub/file'), Buffer.alloc(12345));
    writeFileSync(join(dir, `root/${'x'.repeat(150)}`), Buffer.alloc(77));
    symlinkSync('sub/file', join(dir, 'root/sym'));
    execFileSync('ln', [join(dir, 'root/sub/file'), join(dir, 'root/hard')]);
    const archive = (format: string) => {
      const out = join(dir, `${format}.tar`);
      execFileSync('tar', ['--format', format, '-cf', out, '-C', dir, 'root'], { stdio: 'pipe' });
      return readFileSync(out);
    };
    for (const format of ['gnu', 'pax']) {
      // tar failing here fails the test: no format is skipped quietly.
      const walker = await walk(archive(format));
      expect([format, walker.fileCount, walker.fileBytes]).toEqual([format, 2, 12345 + 77]);
    }
    // ustar cannot hold the 150-character name: tar says so, and writes the rest.
    let refusal: unknown;
    try {
      archive('ustar');
    } catch (error) {
      refusal = error;
    }
    expect(String((refusal as { stderr?: Buffer })?.stderr)).toMatch(/file name is too long/);
    const walker = await walk(readFileSync(join(dir, 'ustar.tar')));
    expect([walker.fileCount, walker.fileBytes]).toEqual([1, 12345]);
  });

  it('refuses a header with a bad checksum', async () => {
    const bytes = await pack([{ name: 'a', size: 10 }]);
    bytes[0] = bytes[0]! ^ 0xff;
    await expect(walk(bytes)).rejects.toThrow(/checksum/);
  });

  it('refuses a stream that ends inside an entry', async () => {
    const bytes = await pack([{ name: 'a', size: 5000 }]);
    await expect(walk(bytes.subarray(0, 2048))).rejects.toThrow(/ended inside an entry/);
  });
});
