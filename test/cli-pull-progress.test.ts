import { describe, expect, it } from 'vitest';
import {
  type JsonMessage,
  ProgressStreamError,
  PullProgressRenderer,
  progressString,
} from '../lib/cli/pull-progress.ts';

const DIGEST = `sha256:${'0123456789abcdef'.repeat(4)}`;

/** What the Docker daemon streams for `docker pull nginx` (one layer cached, two new). */
const NGINX_PULL: JsonMessage[] = [
  { status: 'Pulling from library/nginx', id: 'latest' },
  { status: 'Already exists', progressDetail: {}, id: 'a2abf6c4d29d' },
  { status: 'Pulling fs layer', progressDetail: {}, id: 'a9edb18cadd1' },
  { status: 'Pulling fs layer', progressDetail: {}, id: '589b7251471a' },
  { status: 'Waiting', progressDetail: {}, id: '589b7251471a' },
  {
    status: 'Downloading',
    progressDetail: { current: 12_345_678, total: 45_678_901 },
    progress: '[=============>                                     ]  12.35MB/45.68MB',
    id: 'a9edb18cadd1',
  },
  {
    status: 'Downloading',
    progressDetail: { current: 45_678_901, total: 45_678_901 },
    id: 'a9edb18cadd1',
  },
  { status: 'Verifying Checksum', progressDetail: {}, id: 'a9edb18cadd1' },
  { status: 'Download complete', progressDetail: {}, id: 'a9edb18cadd1' },
  { status: 'Downloading', progressDetail: { current: 512, total: 1024 }, id: '589b7251471a' },
  { status: 'Download complete', progressDetail: {}, id: '589b7251471a' },
  {
    status: 'Extracting',
    progressDetail: { current: 32_768, total: 45_678_901 },
    id: 'a9edb18cadd1',
  },
  {
    status: 'Extracting',
    progressDetail: { current: 45_678_901, total: 45_678_901 },
    id: 'a9edb18cadd1',
  },
  { status: 'Pull complete', progressDetail: {}, id: 'a9edb18cadd1' },
  { status: 'Extracting', progressDetail: { current: 1024, total: 1024 }, id: '589b7251471a' },
  { status: 'Pull complete', progressDetail: {}, id: '589b7251471a' },
  { status: `Digest: ${DIGEST}` },
  { status: 'Status: Downloaded newer image for nginx:latest' },
];

class Capture {
  text = '';
  write(chunk: string) {
    this.text += chunk;
    return true;
  }
}

/** Just enough of a terminal to replay what the renderer wrote: text, \n, \r, CUU, CUD, EL2. */
function screen(output: string): string[] {
  const lines: string[] = [''];
  let row = 0;
  let col = 0;
  const put = (ch: string) => {
    const line = (lines[row] ?? '').padEnd(col, ' ');
    lines[row] = line.slice(0, col) + ch + line.slice(col + 1);
    col++;
  };
  for (let i = 0; i < output.length; i++) {
    const ch = output[i] ?? '';
    if (ch === '\x1b') {
      const match = /^\[(\d*)([ABK])/.exec(output.slice(i + 1));
      if (!match)
        throw new Error(`unexpected escape at ${i}: ${JSON.stringify(output.slice(i, i + 8))}`);
      const n = Number(match[1] || '1');
      if (match[2] === 'A') row = Math.max(0, row - n);
      if (match[2] === 'B') row += n;
      if (match[2] === 'K') lines[row] = '';
      while (lines.length <= row) lines.push('');
      i += match[0].length;
    } else if (ch === '\n') {
      row++;
      col = 0;
      while (lines.length <= row) lines.push('');
    } else if (ch === '\r') {
      col = 0;
    } else {
      put(ch);
    }
  }
  return lines;
}

function render(messages: JsonMessage[], tty: boolean, columns = 120): string {
  const out = new Capture();
  const renderer = new PullProgressRenderer(out, { tty, columns, now: () => 0 });
  for (const message of messages) renderer.render(message);
  return out.text;
}

describe('plain mode (stdout is not a terminal)', () => {
  it('prints one line per status change and drops byte counts, as docker does when piped', () => {
    expect(render(NGINX_PULL, false)).toBe(
      [
        'latest: Pulling from library/nginx',
        'a2abf6c4d29d: Already exists',
        'a9edb18cadd1: Pulling fs layer',
        '589b7251471a: Pulling fs layer',
        '589b7251471a: Waiting',
        'a9edb18cadd1: Verifying Checksum',
        'a9edb18cadd1: Download complete',
        '589b7251471a: Download complete',
        'a9edb18cadd1: Pull complete',
        '589b7251471a: Pull complete',
        `Digest: ${DIGEST}`,
        'Status: Downloaded newer image for nginx:latest',
        '',
      ].join('\n'),
    );
  });

  it('contains no escape sequences', () => {
    expect(render(NGINX_PULL, false)).not.toContain('\x1b');
  });
});

describe('terminal mode', () => {
  it('writes the exact cursor sequence docker writes for a new layer line', () => {
    expect(
      render([{ status: 'Pulling fs layer', progressDetail: {}, id: 'a9edb18cadd1' }], true),
    ).toBe('\n\x1b[1A\x1b[2K\ra9edb18cadd1: Pulling fs layer \r\x1b[1B');
  });

  it('rewrites each layer line in place and leaves the final state on screen', () => {
    expect(screen(render(NGINX_PULL, true))).toEqual([
      'latest: Pulling from library/nginx',
      'a2abf6c4d29d: Already exists ',
      'a9edb18cadd1: Pull complete ',
      '589b7251471a: Pull complete ',
      `Digest: ${DIGEST}`,
      'Status: Downloaded newer image for nginx:latest',
      '',
    ]);
  });

  it('shows a progress bar on the layer line while downloading', () => {
    const midway = NGINX_PULL.slice(0, 6);
    expect(screen(render(midway, true))).toEqual([
      'latest: Pulling from library/nginx',
      'a2abf6c4d29d: Already exists ',
      `a9edb18cadd1: Downloading [${'='.repeat(13)}>${' '.repeat(37)}]  12.35MB/45.68MB`,
      '589b7251471a: Waiting ',
      '',
    ]);
    const extracting = NGINX_PULL.slice(0, 12);
    expect(screen(render(extracting, true))[2]).toBe(
      `a9edb18cadd1: Extracting [>${' '.repeat(50)}]  32.77kB/45.68MB`,
    );
  });

  it('leaves the bar out on narrow terminals', () => {
    expect(screen(render(NGINX_PULL.slice(0, 6), true, 80))[2]).toBe(
      'a9edb18cadd1: Downloading  12.35MB/45.68MB',
    );
  });

  it('keeps the layer block intact when a server omits progressDetail on layer lines', () => {
    const sparse = NGINX_PULL.map(({ progressDetail, ...rest }) =>
      progressDetail && Object.keys(progressDetail).length === 0
        ? rest
        : { progressDetail, ...rest },
    );
    expect(screen(render(sparse, true))).toEqual(screen(render(NGINX_PULL, true)));
    expect(render(sparse, false)).toBe(render(NGINX_PULL, false));
  });
});

describe('progress text', () => {
  it('matches docker JSONProgress.String()', () => {
    expect(progressString({}, 200)).toBe('');
    expect(progressString({ current: 1500 }, 200)).toBe('   1.5kB');
    expect(progressString({ current: 3, total: 10, units: 'items' }, 80)).toBe('3/10 items');
    expect(progressString({ current: 2000, total: 1000 }, 80)).toBe('     2kB');
    expect(progressString({ current: 1000, total: 1000 }, 200)).toBe(
      `[${'='.repeat(50)}>] ${'1kB'.padStart(8)}/1kB`,
    );
    // Started 10 s ago, a quarter done: 30 s left.
    expect(progressString({ current: 250, total: 1000, start: 100 }, 200, 110_000)).toBe(
      `[${'='.repeat(12)}>${' '.repeat(38)}]     250B/1kB 30s`,
    );
  });
});

describe('errors in the stream', () => {
  it('throws the errorDetail message after restoring the cursor', () => {
    const out = new Capture();
    const renderer = new PullProgressRenderer(out, { tty: true });
    renderer.render({ status: 'Pulling fs layer', progressDetail: {}, id: 'a9edb18cadd1' });
    expect(() =>
      renderer.render({
        id: 'a9edb18cadd1',
        errorDetail: { message: 'unexpected EOF' },
        error: 'unexpected EOF',
      }),
    ).toThrow(new ProgressStreamError('unexpected EOF'));
    expect(out.text.endsWith('\x1b[1A\x1b[1B')).toBe(true);
  });

  it('takes the top-level error when errorDetail has no message', () => {
    const renderer = new PullProgressRenderer(new Capture(), { tty: false });
    expect(() => renderer.render({ error: 'manifest unknown' })).toThrow('manifest unknown');
  });
});
