import { Writable } from 'node:stream';

const BLOCK = 512;

/**
 * Counts the regular files of a tar while it streams, without extracting anything: it reads
 * each 512-byte header, then skips the entry's data. This is all Docker's layer SIZE needs, and
 * it is several times cheaper than a full extractor that emits every data chunk.
 * Sizes come from the header (octal or base-256) or a pax `size` record; a header with a bad
 * checksum or a stream that ends inside an entry is an error.
 */
export class TarSizeWalker extends Writable {
  fileBytes = 0;
  fileCount = 0;
  /** Bytes of the current entry's data (plus padding) still to skip. */
  #skip = 0;
  /** Set while the data of a pax header is being collected. */
  #pax: { chunks: Buffer[]; left: number; padding: number; global: boolean } | undefined;
  /** A pax `size` that overrides the next header's own. */
  #paxSize: number | undefined;
  #partial: Buffer | undefined;
  #ended = false;

  override _write(
    chunk: Buffer,
    _enc: BufferEncoding,
    callback: (error?: Error | null) => void,
  ): void {
    try {
      this.#consume(chunk);
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (this.#skip > 0 || this.#pax || (this.#partial && !this.#ended)) {
      callback(new Error('tar stream ended inside an entry'));
      return;
    }
    callback();
  }

  #consume(input: Buffer): void {
    let chunk = input;
    while (chunk.length > 0) {
      if (this.#ended) return;
      if (this.#pax) {
        const take = Math.min(this.#pax.left, chunk.length);
        if (take > 0) this.#pax.chunks.push(chunk.subarray(0, take));
        this.#pax.left -= take;
        chunk = chunk.subarray(take);
        if (this.#pax.left === 0) {
          const { chunks, padding, global } = this.#pax;
          this.#pax = undefined;
          if (!global) this.#paxSize = paxSize(Buffer.concat(chunks));
          this.#skip = padding;
        }
        continue;
      }
      if (this.#skip > 0) {
        const take = Math.min(this.#skip, chunk.length);
        this.#skip -= take;
        chunk = chunk.subarray(take);
        continue;
      }
      let header: Buffer;
      if (this.#partial || chunk.length < BLOCK) {
        const joined = this.#partial ? Buffer.concat([this.#partial, chunk]) : chunk;
        if (joined.length < BLOCK) {
          this.#partial = Buffer.from(joined);
          return;
        }
        header = joined.subarray(0, BLOCK);
        chunk = joined.subarray(BLOCK);
        this.#partial = undefined;
      } else {
        header = chunk.subarray(0, BLOCK);
        chunk = chunk.subarray(BLOCK);
      }
      this.#header(header);
    }
  }

  #header(header: Buffer): void {
    if (header.every((b) => b === 0)) {
      // End-of-archive blocks; anything after them is padding.
      this.#ended = true;
      return;
    }
    if (!checksumMatches(header)) throw new Error('invalid tar header checksum');
    const type = String.fromCharCode(header[156] ?? 0);
    const size = this.#paxSize ?? readNumber(header.subarray(124, 136));
    this.#paxSize = undefined;
    const padded = Math.ceil(size / BLOCK) * BLOCK;
    if (type === 'x' || type === 'g') {
      this.#pax = { chunks: [], left: size, padding: padded - size, global: type === 'g' };
      return;
    }
    if (type === '0' || type === '\0' || type === '7') {
      this.fileBytes += size;
      this.fileCount++;
    }
    // Links, directories and devices carry no data; GNU long names ('L', 'K') are skipped.
    this.#skip = type === '1' || type === '2' || type === '5' ? 0 : padded;
  }
}

function checksumMatches(header: Buffer): boolean {
  let sum = 8 * 0x20;
  for (let i = 0; i < BLOCK; i++) if (i < 148 || i >= 156) sum += header[i]!;
  return sum === readNumber(header.subarray(148, 156));
}

/** Octal, or GNU base-256 when the high bit of the first byte is set (sizes over 8 GiB). */
function readNumber(field: Buffer): number {
  if ((field[0]! & 0x80) !== 0) {
    let value = field[0]! & 0x7f;
    for (let i = 1; i < field.length; i++) value = value * 256 + field[i]!;
    return value;
  }
  const text = field.toString('latin1').replace(/\0.*$/s, '').trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text))
    throw new Error(`invalid number in tar header: ${JSON.stringify(text)}`);
  return Number.parseInt(text, 8);
}

/** Reads `size` from pax records (`<len> key=value\n`). */
function paxSize(data: Buffer): number | undefined {
  let offset = 0;
  let size: number | undefined;
  while (offset < data.length) {
    const space = data.indexOf(0x20, offset);
    if (space < 0) break;
    const length = Number.parseInt(data.toString('latin1', offset, space), 10);
    if (!Number.isFinite(length) || length <= 0) break;
    const record = data.toString('utf8', space + 1, offset + length - 1);
    const eq = record.indexOf('=');
    if (record.slice(0, eq) === 'size') size = Number.parseInt(record.slice(eq + 1), 10);
    offset += length;
  }
  return size;
}
