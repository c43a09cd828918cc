/** `image-cache images`: `docker image ls` over GET /images/json. */
import { UsageError } from '../args.ts';
import { defineCommand } from '../command.ts';
import type { Command } from '../context.ts';
import { createdSince, goTimeString, humanSizeWithPrecision, shortImageId } from '../format.ts';
import { familiarName } from '../names.ts';
import { LIST_FORMAT_HELP, renderRows } from '../template.ts';

/** One entry of GET /images/json, as the Docker Engine API spells it. */
export interface ImageSummary {
  Id: string;
  ParentId?: string;
  RepoTags?: string[] | null;
  RepoDigests?: string[] | null;
  Created: number;
  Size: number;
  SharedSize?: number;
  VirtualSize?: number;
  Containers?: number;
  Labels?: Record<string, string> | null;
}

/** One table row: docker prints one per repository:tag (and per digest with --digests). */
export interface ImageRow {
  Containers: string;
  CreatedAt: string;
  CreatedSince: string;
  Digest: string;
  ID: string;
  Repository: string;
  SharedSize: string;
  Size: string;
  Tag: string;
  UniqueSize: string;
  VirtualSize: string;
}

export const IMAGE_HEADERS: Record<string, string> = {
  Containers: 'CONTAINERS',
  CreatedAt: 'CREATED AT',
  CreatedSince: 'CREATED',
  Digest: 'DIGEST',
  ID: 'IMAGE ID',
  Repository: 'REPOSITORY',
  SharedSize: 'SHARED SIZE',
  Size: 'SIZE',
  Tag: 'TAG',
  UniqueSize: 'UNIQUE SIZE',
  VirtualSize: 'VIRTUAL SIZE',
};

const TABLE = 'table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}';
const TABLE_DIGESTS =
  'table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}';

/** Split `repo:tag` at the last colon that is not part of a `host:port`. */
export function splitRepoTag(repoTag: string): { repo: string; tag: string } {
  const colon = repoTag.lastIndexOf(':');
  if (colon > repoTag.lastIndexOf('/')) {
    return { repo: repoTag.slice(0, colon), tag: repoTag.slice(colon + 1) };
  }
  return { repo: repoTag, tag: '<none>' };
}

function isDangling(image: ImageSummary): boolean {
  const tags = image.RepoTags ?? [];
  const digests = image.RepoDigests ?? [];
  if (tags.length === 0 && digests.length === 0) return true;
  return (
    tags.length === 1 &&
    tags[0] === '<none>:<none>' &&
    digests.length === 1 &&
    digests[0] === '<none>@<none>'
  );
}

/** Rows for one image, following docker's rules for tags, digests and dangling images. */
export function imageRows(
  image: ImageSummary,
  options: { digests: boolean; noTrunc: boolean; now: number },
): ImageRow[] {
  const size = humanSizeWithPrecision(image.Size, 3);
  const shared = image.SharedSize ?? -1;
  const base = {
    Containers:
      image.Containers === undefined || image.Containers < 0 ? 'N/A' : String(image.Containers),
    CreatedAt: goTimeString(image.Created),
    CreatedSince: createdSince(image.Created, options.now),
    ID: shortImageId(image.Id, options.noTrunc),
    SharedSize: shared < 0 ? 'N/A' : humanSizeWithPrecision(shared, 3),
    Size: size,
    UniqueSize: shared < 0 ? 'N/A' : humanSizeWithPrecision(image.Size - shared, 3),
    VirtualSize: humanSizeWithPrecision(image.VirtualSize ?? image.Size, 3),
  };
  // Keys in alphabetical order: docker's JSON comes from a Go map, which sorts them.
  const row = (Repository: string, Tag: string, Digest: string): ImageRow => ({
    Containers: base.Containers,
    CreatedAt: base.CreatedAt,
    CreatedSince: base.CreatedSince,
    Digest,
    ID: base.ID,
    Repository,
    SharedSize: base.SharedSize,
    Size: base.Size,
    Tag,
    UniqueSize: base.UniqueSize,
    VirtualSize: base.VirtualSize,
  });
  if (isDangling(image)) return [row('<none>', '<none>', '<none>')];

  const tagsByRepo = new Map<string, string[]>();
  for (const repoTag of image.RepoTags ?? []) {
    if (repoTag === '<none>:<none>') continue;
    const { repo, tag } = splitRepoTag(repoTag);
    const name = familiarName(repo);
    tagsByRepo.set(name, [...(tagsByRepo.get(name) ?? []), tag]);
  }
  const digestsByRepo = new Map<string, string[]>();
  for (const repoDigest of image.RepoDigests ?? []) {
    const at = repoDigest.indexOf('@');
    if (at === -1 || repoDigest === '<none>@<none>') continue;
    const name = familiarName(repoDigest.slice(0, at));
    digestsByRepo.set(name, [...(digestsByRepo.get(name) ?? []), repoDigest.slice(at + 1)]);
  }

  const rows: ImageRow[] = [];
  for (const [repo, tags] of tagsByRepo) {
    const digests = options.digests ? (digestsByRepo.get(repo) ?? []) : [];
    digestsByRepo.delete(repo);
    for (const tag of tags) {
      if (digests.length === 0) rows.push(row(repo, tag, '<none>'));
      for (const digest of digests) rows.push(row(repo, tag, digest));
    }
  }
  // Repositories known only by digest (a pull by digest): one row with tag <none>.
  for (const [repo, digests] of digestsByRepo) {
    if (options.digests) for (const digest of digests) rows.push(row(repo, '<none>', digest));
    else rows.push(row(repo, '<none>', ''));
  }
  return rows;
}

/** `--filter k=v` flags as docker's filters map: names lower-cased, both sides trimmed. */
export function filterMap(filters: readonly string[]): Record<string, Record<string, boolean>> {
  const map: Record<string, Record<string, boolean>> = {};
  for (const filter of filters) {
    const eq = filter.indexOf('=');
    if (eq <= 0) throw new UsageError(`bad format of filter (expected name=value): ${filter}`);
    const name = filter.slice(0, eq).trim().toLowerCase();
    map[name] = { ...map[name], [filter.slice(eq + 1).trim()]: true };
  }
  return map;
}

/** `--filter k=v` (repeatable) and a REPOSITORY[:TAG] argument, in Docker's filters JSON. */
export function filtersJson(filters: readonly string[], reference?: string): string | undefined {
  const map = filterMap(filters);
  if (reference) map.reference = { ...map.reference, [reference]: true };
  return Object.keys(map).length > 0 ? JSON.stringify(map) : undefined;
}

export function renderImages(
  images: readonly ImageSummary[],
  options: { digests: boolean; noTrunc: boolean; quiet: boolean; format?: string; now: number },
): string {
  if (options.quiet) {
    const ids = [...new Set(images.map((i) => shortImageId(i.Id, options.noTrunc)))];
    return ids.map((id) => `${id}\n`).join('');
  }
  const rows = images.flatMap((image) => imageRows(image, options));
  return renderRows(rows, options.format, options.digests ? TABLE_DIGESTS : TABLE, IMAGE_HEADERS);
}

export const images: Command = defineCommand({
  name: 'images',
  arguments: '[REPOSITORY[:TAG]]',
  description: 'List images (aliases: ls, image ls)',
  arity: { atMost: 1 },
  flags: {
    all: {
      type: 'boolean',
      short: 'a',
      help: 'Show all images (default hides intermediate images)',
    },
    digests: { type: 'boolean', help: 'Show digests' },
    filter: {
      type: 'list',
      short: 'f',
      value: 'filter',
      help: 'Filter output based on conditions provided',
    },
    format: { type: 'string', help: LIST_FORMAT_HELP },
    'no-trunc': { type: 'boolean', help: "Don't truncate output" },
    quiet: { type: 'boolean', short: 'q', help: 'Only show image IDs' },
  },
  async run({ flags, args }, ctx) {
    const list = await ctx.client().json<ImageSummary[]>('/images/json', {
      query: {
        all: flags.all ? '1' : undefined,
        filters: filtersJson(flags.filter, args[0]),
        digests: flags.digests ? '1' : undefined,
      },
    });
    ctx.stdout.write(
      renderImages(Array.isArray(list) ? list : [], {
        digests: flags.digests,
        noTrunc: flags['no-trunc'],
        quiet: flags.quiet,
        now: ctx.now(),
        ...(flags.format === undefined ? {} : { format: flags.format }),
      }),
    );
    return 0;
  },
});
