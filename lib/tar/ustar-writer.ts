/**
 * A minimal, deterministic ustar writer: headers are pure functions of (name, size, type), so
 * the exact archive length is known before a byte is written (Content-Length), and the same
 * entries always give the same bytes. Only what image tarballs need: regular files and
 * directories, names up to 255 bytes (ustar prefix split), sizes beyond 8 GiB in GNU base-256.
 */

export const BLOCK = 512;
/** Two zero blocks end an archive. */
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);

export interface TarEntryHeader {
  name: string;
  /** Bytes of content; 0 for directories. */
  size: number;
  type?: 'file' | 'directory';
  /** Seconds since the epoch; default 0 for reproducible archives. */
  mtime?: number;
  mode?: number;
}

/** Bytes an entry takes in the archive: its header plus its content padded to a block. */
export function entryLength(size: number): number {
  return BLOCK + paddedSize(size);
}

export function paddedSize(size: number): number {
  return Math.ceil(size / BLOCK) * BLOCK;
}

/** Zero bytes that follow `size` content bytes up to the next block boundary. */
export function padding(size: number): Buffer {
  const rest = size % BLOCK;
  return rest === 0 ? Buffer.alloc(0) : Buffer.alloc(BLOCK - rest);
}

/** Total archive length for entries of these sizes, end-of-archive blocks included. */
export function archiveLength(sizes: Iterable<number>): number {
  let total = END_OF_ARCHIVE.length;
  for (const size of sizes) total += entryLength(size);
  return total;
}

const MAX_OCTAL_SIZE = 8 ** 11 - 1;

export function tarHeader(entry: TarEntryHeader): Buffer {
  const directory = entry.type === 'directory';
  const size = directory ? 0 : entry.size;
  if (!Number.isSafeInteger(size) || size < 0) throw new Error(`invalid tar entry size ${size}`);
  const name = directory && !entry.name.endsWith('/') ? `${entry.name}/` : entry.name;
  const { prefix, base } = splitName(name);
  const header = Buffer.alloc(BLOCK);
  header.write(base, 0, 100, 'utf8');
  writeOctal(header, 100, 8, entry.mode ?? (directory ? 0o755 : 0o644));
  writeOctal(header, 108, 8, 0); // uid
  writeOctal(header, 116, 8, 0); // gid
  if (size <= MAX_OCTAL_SIZE) {
    writeOctal(header, 124, 12, size);
  } else {
    // GNU base-256: high bit set, big-endian binary in the remaining 11 bytes.
    header[124] = 0x80;
    header.writeBigUInt64BE(BigInt(size), 128);
  }
  writeOctal(header, 136, 12, entry.mtime ?? 0);
  header.fill(0x20, 148, 156); // checksum is computed with its own field as spaces
  header.write(directory ? '5' : '0', 156, 1, 'ascii');
  header.write('ustar\u000000', 257, 8, 'ascii');
  header.write(prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const byte of header) sum += byte;
  // Six octal digits, NUL, space: what GNU tar and Go's archive/tar write.
  header.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 8, 'ascii');
  return header;
}

function writeOctal(header: Buffer, offset: number, length: number, value: number) {
  header.write(`${value.toString(8).padStart(length - 1, '0')}\u0000`, offset, length, 'ascii');
}

function splitName(name: string): { prefix: string; base: string } {
  if (Buffer.byteLength(name) <= 100) return { prefix: '', base: name };
  // ustar joins prefix and name with a slash: split at a slash that fits both fields.
  for (let i = name.lastIndexOf('/'); i > 0; i = name.lastIndexOf('/', i - 1)) {
    const prefix = name.slice(0, i);
    const base = name.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(base) <= 100 && base) {
      return { prefix, base };
    }
  }
  throw new Error(`tar entry name too long for ustar: ${name}`);
}
