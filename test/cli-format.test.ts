import { describe, expect, it } from 'vitest';
import { parseArgs, UsageError } from '../lib/cli/args.ts';
import { history } from '../lib/cli/commands/history.ts';
import { imageRows, renderImages, splitRepoTag } from '../lib/cli/commands/images.ts';
import {
  ellipsis,
  formatG,
  goDuration,
  goJson,
  humanDuration,
  humanSize,
  humanSizeWithPrecision,
  table,
  tabwrite,
} from '../lib/cli/format.ts';
import { familiarName, fullReference, splitReference } from '../lib/cli/names.ts';
import { parseTemplate, renderAll } from '../lib/cli/template.ts';

describe('formatG matches Go %.*g', () => {
  it.each([
    [0, 3, '0'],
    [7.8, 3, '7.8'],
    [142, 3, '142'],
    [100, 3, '100'],
    [1000, 3, '1e+03'],
    [999.999, 3, '1e+03'],
    [1.5, 3, '1.5'],
    [0.0001234, 3, '0.000123'],
    [0.00001234, 3, '1.23e-05'],
    [1.125, 3, '1.12'], // exact tie: round half to even
    [1.375, 3, '1.38'],
    [2.5, 1, '2'],
    [3.5, 1, '4'],
    [12.345678, 4, '12.35'],
    [-42.5, 2, '-42'],
  ])('%s with precision %s -> %s', (value, precision, expected) => {
    expect(formatG(value, precision)).toBe(expected);
  });
});

describe('humanSizeWithPrecision(size, 3) matches go-units', () => {
  it.each([
    [0, '0B'],
    [1, '1B'],
    [999, '999B'],
    [1000, '1kB'],
    [1500, '1.5kB'],
    [1125, '1.12kB'],
    [1135, '1.14kB'], // 1.135 is stored as 1.13500000000000000888
    [7_800_000, '7.8MB'],
    [77_811_431, '77.8MB'],
    [142e6, '142MB'],
    [187_654_321, '188MB'],
    [999_999, '1e+03kB'], // go-units really prints this
    [1.23e9, '1.23GB'],
    [5e24, '5YB'],
    [5e27, '5e+03YB'],
  ])('%s -> %s', (size, expected) => {
    expect(humanSizeWithPrecision(size, 3)).toBe(expected);
  });

  it('HumanSize uses four digits', () => {
    expect(humanSize(12_345_678)).toBe('12.35MB');
    expect(humanSize(45_678_901)).toBe('45.68MB');
    expect(humanSize(512)).toBe('512B');
  });
});

describe('humanDuration matches go-units HumanDuration', () => {
  const s = 1000;
  const m = 60 * s;
  const h = 60 * m;
  const d = 24 * h;
  it.each([
    [-5 * s, 'Less than a second'],
    [0, 'Less than a second'],
    [999, 'Less than a second'],
    [s, '1 second'],
    [59 * s + 999, '59 seconds'],
    [60 * s, 'About a minute'],
    [119 * s, 'About a minute'],
    [120 * s, '2 minutes'],
    [59 * m + 59 * s, '59 minutes'],
    [60 * m, 'About an hour'],
    [89 * m, 'About an hour'],
    [90 * m, '2 hours'],
    [47 * h + 29 * m, '47 hours'],
    [47 * h + 30 * m, '2 days'],
    [13 * d + 11 * h, '13 days'],
    [14 * d, '2 weeks'],
    [59 * d, '8 weeks'],
    [60 * d, '2 months'],
    [729 * d, '24 months'],
    [730 * d, '2 years'],
    [3 * 365 * d + 200 * d, '3 years'],
  ])('%s ms -> %s', (ms, expected) => {
    expect(humanDuration(ms)).toBe(expected);
  });

  it('Go Duration.String for time left', () => {
    expect(goDuration(0)).toBe('0s');
    expect(goDuration(42_900)).toBe('42s');
    expect(goDuration(90_000)).toBe('1m30s');
    expect(goDuration(3_605_000)).toBe('1h0m5s');
  });
});

describe('tabwriter layout as docker configures it', () => {
  it('pads every column but the last to max(10, widest + 3)', () => {
    expect(
      table([
        ['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'SIZE'],
        ['nginx', 'latest', 'a1b2c3d4e5f6', '2 hours ago', '142MB'],
        ['ghcr.io/acme/tools', '1.0', '0123456789ab', '3 weeks ago', '7.8MB'],
      ]),
    ).toBe(
      'REPOSITORY           TAG       IMAGE ID       CREATED       SIZE\n' +
        'nginx                latest    a1b2c3d4e5f6   2 hours ago   142MB\n' +
        'ghcr.io/acme/tools   1.0       0123456789ab   3 weeks ago   7.8MB\n',
    );
  });

  it('prints the bare header for an empty listing', () => {
    expect(table([['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'SIZE']])).toBe(
      'REPOSITORY   TAG       IMAGE ID   CREATED   SIZE\n',
    );
  });

  it('pads an empty last-but-one cell and counts code points, not bytes', () => {
    expect(tabwrite('a…\tb\t\nxyz\tlonger-value\tc\n')).toBe(
      'a…        b              \nxyz       longer-value   c\n',
    );
  });

  it('aligns column blocks of consecutive lines only', () => {
    expect(tabwrite('aaaaaaaaaaaa\tb\nno tabs here\nc\td\n')).toBe(
      'aaaaaaaaaaaa   b\nno tabs here\nc         d\n',
    );
  });
});

describe('names', () => {
  it.each([
    ['nginx', { name: 'nginx' }, 'docker.io/library/nginx:latest'],
    ['nginx:1.27', { name: 'nginx', tag: '1.27' }, 'docker.io/library/nginx:1.27'],
    ['bitnami/redis:7', { name: 'bitnami/redis', tag: '7' }, 'docker.io/bitnami/redis:7'],
    ['localhost:5000/app', { name: 'localhost:5000/app' }, 'localhost:5000/app:latest'],
    ['localhost:5000/app:v2', { name: 'localhost:5000/app', tag: 'v2' }, 'localhost:5000/app:v2'],
    [
      `nginx:1@sha256:${'a'.repeat(64)}`,
      { name: 'nginx', digest: `sha256:${'a'.repeat(64)}` },
      `docker.io/library/nginx@sha256:${'a'.repeat(64)}`,
    ],
  ])('%s', (input, split, full) => {
    const ref = splitReference(input);
    expect(ref).toEqual(split);
    expect(fullReference(ref)).toBe(full);
  });

  it('familiar names drop docker.io and library/', () => {
    expect(familiarName('docker.io/library/nginx')).toBe('nginx');
    expect(familiarName('docker.io/bitnami/redis')).toBe('bitnami/redis');
    expect(familiarName('ghcr.io/acme/tools')).toBe('ghcr.io/acme/tools');
    expect(splitRepoTag('localhost:5000/app')).toEqual({
      repo: 'localhost:5000/app',
      tag: '<none>',
    });
    expect(splitRepoTag('localhost:5000/app:v1')).toEqual({
      repo: 'localhost:5000/app',
      tag: 'v1',
    });
  });
});

describe('image rows', () => {
  const now = Date.UTC(2025, 0, 1);
  const created = now / 1000 - 2 * 3600;
  const digest = `sha256:${'d'.repeat(64)}`;
  const image = {
    Id: `sha256:${'f'.repeat(64)}`,
    RepoTags: ['docker.io/library/nginx:latest', 'nginx:1.27', 'localhost:5000/web:v1'],
    RepoDigests: [`nginx@${digest}`],
    Created: created,
    Size: 187_654_321,
    SharedSize: -1,
    Containers: -1,
  };

  it('one row per tag, digests only with --digests', () => {
    const rows = imageRows(image, { digests: false, noTrunc: false, now });
    expect(rows.map((r) => [r.Repository, r.Tag, r.Digest, r.ID, r.CreatedSince, r.Size])).toEqual([
      ['nginx', 'latest', '<none>', 'ffffffffffff', '2 hours ago', '188MB'],
      ['nginx', '1.27', '<none>', 'ffffffffffff', '2 hours ago', '188MB'],
      ['localhost:5000/web', 'v1', '<none>', 'ffffffffffff', '2 hours ago', '188MB'],
    ]);
    const withDigests = imageRows(image, { digests: true, noTrunc: true, now });
    expect(withDigests[0]?.Digest).toBe(digest);
    expect(withDigests[0]?.ID).toBe(image.Id);
    expect(withDigests[2]?.Digest).toBe('<none>');
  });

  it('digest-only and dangling images', () => {
    const byDigest = { ...image, RepoTags: [], RepoDigests: [`docker.io/library/redis@${digest}`] };
    expect(imageRows(byDigest, { digests: false, noTrunc: false, now })[0]).toMatchObject({
      Repository: 'redis',
      Tag: '<none>',
    });
    const dangling = { ...image, RepoTags: null, RepoDigests: null };
    expect(imageRows(dangling, { digests: false, noTrunc: false, now })[0]).toMatchObject({
      Repository: '<none>',
      Tag: '<none>',
    });
  });

  it('json lines carry docker keys in docker order, with Go escaping', () => {
    const out = renderImages([{ ...image, RepoTags: ['nginx:latest'] }], {
      digests: false,
      noTrunc: false,
      quiet: false,
      format: 'json',
      now,
    });
    const line = out.trimEnd();
    expect(line).toContain('"Digest":"\\u003cnone\\u003e"');
    expect(Object.keys(JSON.parse(line))).toEqual([
      'Containers',
      'CreatedAt',
      'CreatedSince',
      'Digest',
      'ID',
      'Repository',
      'SharedSize',
      'Size',
      'Tag',
      'UniqueSize',
      'VirtualSize',
    ]);
    expect(JSON.parse(line)).toMatchObject({ Containers: 'N/A', SharedSize: 'N/A', Size: '188MB' });
  });

  it('custom templates, with and without the table prefix', () => {
    const opts = { digests: false, noTrunc: false, quiet: false, now };
    expect(renderImages([image], { ...opts, format: '{{.Repository}}:{{.Tag}}' })).toBe(
      'nginx:latest\nnginx:1.27\nlocalhost:5000/web:v1\n',
    );
    expect(renderImages([image], { ...opts, format: 'table {{.Repository}}\\t{{.Size}}' })).toBe(
      'REPOSITORY           SIZE\nnginx                188MB\nnginx                188MB\nlocalhost:5000/web   188MB\n',
    );
    expect(renderImages([image, image], { ...opts, quiet: true })).toBe('ffffffffffff\n');
  });
});

describe('templates and flags', () => {
  it('renders fields, nested paths and json', () => {
    const t = parseTemplate('{{.Id}} {{json .Config.Labels}} {{upper .Os}}');
    expect(renderAll(t, [{ Id: 'x', Config: { Labels: { a: '<b>' } }, Os: 'linux' }], {})).toBe(
      'x {"a":"\\u003cb\\u003e"} LINUX\n',
    );
    expect(() => parseTemplate('{{range .RepoTags}}{{.}}{{end}}')).toThrow(UsageError);
  });

  it('parses docker-style flags', () => {
    const specs = {
      all: { type: 'boolean', short: 'a' },
      quiet: { type: 'boolean', short: 'q' },
      human: { type: 'boolean', short: 'H', default: true },
      filter: { type: 'list', short: 'f' },
      format: { type: 'string' },
    } as const;
    const parsed = parseArgs(
      ['-aq', '-H=false', '--filter', 'dangling=true', '-fbefore=x', '--format=json', 'nginx'],
      specs,
    );
    expect(parsed.flags).toEqual({
      all: true,
      quiet: true,
      human: false,
      filter: ['dangling=true', 'before=x'],
      format: 'json',
    });
    expect(parsed.positionals).toEqual(['nginx']);
    expect(() => parseArgs(['--bogus'], specs)).toThrow('unknown flag: --bogus');
    expect(() => parseArgs(['--format'], specs)).toThrow('flag needs an argument');
  });

  it('misc helpers', () => {
    expect(ellipsis('x'.repeat(45), 45)).toBe('x'.repeat(45));
    expect(ellipsis('x'.repeat(46), 45)).toBe(`${'x'.repeat(44)}…`);
    expect(goJson({ a: '&' })).toBe('{"a":"\\u0026"}');
    expect(history.usage).toContain('--human');
  });
});
