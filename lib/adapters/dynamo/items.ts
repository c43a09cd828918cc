/**
 * Item mappers: domain records to DynamoDB attribute maps and back. Optional fields are left
 * out rather than stored as NULL, and read back as absent, so records compare strictly equal to
 * what the SQLite adapter returns.
 */
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import type { Scope } from '../../auth/scopes.ts';
import type { Digest } from '../../digest.ts';
import type { GcReport } from '../../ports/gc-report-log.ts';
import type {
  BlobRecord,
  BlobState,
  DigestRefRecord,
  ImageSummary,
  ManifestRecord,
  PinRecord,
  TagRecord,
} from '../../ports/image-catalog.ts';
import type { TokenRecord } from '../../ports/token-store.ts';
import { type ItemKind, type Key, keys } from './schema.ts';

export type Item = Record<string, AttributeValue>;

export const av = {
  s: (value: string): AttributeValue => ({ S: value }),
  n: (value: number): AttributeValue => ({ N: String(Math.trunc(value)) }),
  b: (value: Uint8Array): AttributeValue => ({ B: value }),
  list: (values: readonly string[]): AttributeValue => ({ L: values.map((v) => ({ S: v })) }),
};

export function keyItem(key: Key): Item {
  return { pk: av.s(key.pk), sk: av.s(key.sk) };
}

/** Code-unit order, as SQLite's BINARY collation orders the ASCII names the catalog holds. */
export function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function base(key: Key, kind: ItemKind): Item {
  return { ...keyItem(key), kind: av.s(kind) };
}

export function str(item: Item, name: string): string {
  const value = item[name]?.S;
  if (value === undefined) throw new Error(`catalog item ${itemName(item)} lacks ${name}`);
  return value;
}

export function optStr(item: Item, name: string): string | undefined {
  return item[name]?.S;
}

export function num(item: Item, name: string): number {
  const value = item[name]?.N;
  if (value === undefined) throw new Error(`catalog item ${itemName(item)} lacks ${name}`);
  return Number(value);
}

export function optNum(item: Item, name: string): number | undefined {
  const value = item[name]?.N;
  return value === undefined ? undefined : Number(value);
}

/** An optional number attribute: left out when absent, never stored as NULL. */
export function optionalNumber(name: string, value: number | undefined): Item {
  return value === undefined ? {} : { [name]: av.n(value) };
}

/** An optional record field read back: absent rather than undefined, so records compare equal. */
export function present<K extends string>(
  name: K,
  value: number | undefined,
): { [P in K]?: number } {
  return (value === undefined ? {} : { [name]: value }) as { [P in K]?: number };
}

export function strings(item: Item, name: string): string[] {
  return (item[name]?.L ?? []).map((v) => v.S ?? '');
}

function itemName(item: Item): string {
  return `${item.pk?.S ?? '?'}/${item.sk?.S ?? '?'}`;
}

// --- blobs

export function toBlob(item: Item): BlobRecord {
  const unpackedSize = optNum(item, 'unpackedSize');
  const diffId = item.diffId?.S;
  return {
    digest: str(item, 'digest') as Digest,
    size: num(item, 'size'),
    ...(unpackedSize !== undefined && { unpackedSize }),
    ...(diffId !== undefined && { diffId: diffId as Digest }),
    state: str(item, 'state') as BlobState,
    generation: num(item, 'generation'),
    touchedAt: num(item, 'touchedAt'),
  };
}

// --- manifests

/** How a manifest's raw bytes are kept: inline, or in `chunks` items of one incarnation. */
export interface RawPlacement {
  incarnation: string;
  chunks: number;
}

/** The manifest item, with raw inline unless `placement.chunks` > 0. */
export function manifestItem(record: ManifestRecord, placement: RawPlacement, now: number): Item {
  return {
    ...manifestMeta(record, placement),
    ...(placement.chunks === 0 && { raw: av.b(record.raw) }),
    lastUsedAt: av.n(now),
  };
}

function manifestMeta(record: ManifestRecord, placement: RawPlacement): Item {
  return {
    ...base(keys.manifest(record.digest), 'manifest'),
    digest: av.s(record.digest),
    mediaType: av.s(record.mediaType),
    inc: av.s(placement.incarnation),
    rawChunks: av.n(placement.chunks),
    rawSize: av.n(record.raw.byteLength),
    blobs: av.list(record.blobs),
    children: av.list(record.children),
    ...(record.image && {
      image: av.s(JSON.stringify(record.image)),
      configDigest: av.s(record.image.configDigest),
    }),
    createdAt: av.n(record.createdAt),
  };
}

/** Bytes the manifest item takes without its raw bytes (names and values, as DynamoDB counts). */
export function manifestMetaSize(record: ManifestRecord): number {
  return itemSize({ ...manifestMeta(record, { incarnation: 'x'.repeat(36), chunks: 0 }) }) + 64;
}

/** Reads a manifest item whose raw bytes were fetched separately when chunked. */
export function toManifest(item: Item, raw: Uint8Array): ManifestRecord {
  const image = optStr(item, 'image');
  return {
    digest: str(item, 'digest') as Digest,
    mediaType: str(item, 'mediaType'),
    raw,
    blobs: strings(item, 'blobs') as Digest[],
    children: strings(item, 'children') as Digest[],
    ...(image !== undefined && { image: JSON.parse(image) as ImageSummary }),
    createdAt: num(item, 'createdAt'),
    lastUsedAt: num(item, 'lastUsedAt'),
  };
}

export function rawChunkItem(
  digest: Digest,
  incarnation: string,
  index: number,
  data: Uint8Array,
): Item {
  return {
    ...base(keys.rawChunk(digest, incarnation, index), 'raw'),
    digest: av.s(digest),
    inc: av.s(incarnation),
    index: av.n(index),
    data: av.b(data),
  };
}

// --- tags, digest refs, pins

export function tagItem(record: TagRecord): Item {
  return {
    ...base(keys.tag(record.repository, record.tag), 'tag'),
    repository: av.s(record.repository),
    tag: av.s(record.tag),
    manifest: av.s(record.manifest),
    source: av.s(record.source),
    ...(record.platform !== undefined && { platform: av.s(record.platform) }),
    updatedAt: av.n(record.updatedAt),
    checkedAt: av.n(record.checkedAt),
  };
}

export function toTag(item: Item): TagRecord {
  const platform = optStr(item, 'platform');
  return {
    repository: str(item, 'repository'),
    tag: str(item, 'tag'),
    manifest: str(item, 'manifest') as Digest,
    source: str(item, 'source') as Digest,
    ...(platform !== undefined && { platform }),
    updatedAt: num(item, 'updatedAt'),
    checkedAt: num(item, 'checkedAt'),
  };
}

export function digestRefItem(record: DigestRefRecord): Item {
  return {
    ...base(keys.digestRef(record.repository, record.digest), 'ref'),
    repository: av.s(record.repository),
    digest: av.s(record.digest),
    manifest: av.s(record.manifest),
    createdAt: av.n(record.createdAt),
  };
}

export function toDigestRef(item: Item): DigestRefRecord {
  return {
    repository: str(item, 'repository'),
    digest: str(item, 'digest') as Digest,
    manifest: str(item, 'manifest') as Digest,
    createdAt: num(item, 'createdAt'),
  };
}

export function pinItem(record: PinRecord): Item {
  return {
    ...base(keys.pin(record.name), 'pin'),
    name: av.s(record.name),
    manifest: av.s(record.manifest),
    note: av.s(record.note),
    createdAt: av.n(record.createdAt),
    // Not `ttl`: a pin past its expiry still holds its manifest until retention removes it.
    ...optionalNumber('pinExpiresAt', record.expiresAt),
  };
}

export function toPin(item: Item): PinRecord {
  return {
    name: str(item, 'name'),
    manifest: str(item, 'manifest') as Digest,
    note: str(item, 'note'),
    createdAt: num(item, 'createdAt'),
    ...present('expiresAt', optNum(item, 'pinExpiresAt')),
  };
}

// --- API tokens (read side first: what a lookup by hash answers)

export function toToken(item: Item): TokenRecord {
  return {
    id: str(item, 'id'),
    hash: str(item, 'hash'),
    name: str(item, 'name'),
    scope: str(item, 'scope') as Scope,
    createdAt: num(item, 'createdAt'),
    ...present('lastUsedAt', optNum(item, 'lastUsedAt')),
  };
}

export function tokenItem(record: TokenRecord): Item {
  return {
    ...base(keys.token(record.hash), 'token'),
    id: av.s(record.id),
    hash: av.s(record.hash),
    name: av.s(record.name),
    scope: av.s(record.scope),
    createdAt: av.n(record.createdAt),
    ...optionalNumber('lastUsedAt', record.lastUsedAt),
  };
}

// --- GC reports

/** Room for the report JSON in its item; the error list is shortened to fit. */
const REPORT_JSON_LIMIT = 300_000;

export function gcReportItem(report: GcReport, seq: number): Item {
  return {
    ...base(keys.gcReport(seq), 'gc'),
    id: av.s(report.id),
    report: av.s(fitReport(report)),
  };
}

function fitReport(report: GcReport): string {
  let json = JSON.stringify(report);
  let kept = report.errors.length;
  while (Buffer.byteLength(json) > REPORT_JSON_LIMIT && kept > 0) {
    kept = Math.floor(kept / 2);
    const errors = [
      ...report.errors.slice(0, kept),
      `... ${report.errors.length - kept} more errors not kept`,
    ];
    json = JSON.stringify({ ...report, errors });
  }
  return json;
}

export function toGcReport(item: Item): GcReport {
  return JSON.parse(str(item, 'report')) as GcReport;
}

/** DynamoDB's item size: attribute name bytes plus value bytes (close enough for limits). */
export function itemSize(item: Item): number {
  let total = 0;
  for (const [name, value] of Object.entries(item)) total += Buffer.byteLength(name) + size(value);
  return total;
}

function size(value: AttributeValue): number {
  if (value.S !== undefined) return Buffer.byteLength(value.S);
  if (value.N !== undefined) return value.N.length;
  if (value.B !== undefined) return value.B.byteLength;
  if (value.L !== undefined) return 3 + value.L.reduce((sum, v) => sum + 1 + size(v), 0);
  if (value.M !== undefined) return 3 + itemSize(value.M);
  return 1;
}
