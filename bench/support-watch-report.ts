/**
 * bench/watch.ts's report: one column per case (backend, watch count), the watcher's rows above
 * the cron peer's, then how each figure grew from the smallest case to the largest.
 */
import type { CaseResult, Step } from './support-watch-case.ts';

type Row = [string, (c: CaseResult) => string];

const ms = (value: number) => (value >= 10_000 ? value.toFixed(0) : value.toFixed(1));
const per = (value: number, n: number) => (n === 0 ? '-' : (value / n).toFixed(2));
const gets = (s: Step) => s.upstream.manifestGets + s.upstream.blobGets;
const upstreamTotal = (s: Step) => s.upstream.heads + gets(s) + s.upstream.other;
const dynamo = (s: Step, n: number) => (s.dynamo ? per(s.dynamo.total, n) : 'n/a');

const ROWS: Row[] = [
  ['PUT /cache/watch 4 at once, first 10% (ms)', (c) => ms(c.putFirstMs)],
  ['PUT /cache/watch 4 at once, last 10% (ms)', (c) => ms(c.putLastMs)],
  ['GET /cache/watch (ms median of 5)', (c) => ms(c.list.ms)],
  [
    'GET /cache/watch DynamoDB requests',
    (c) => (c.list.dynamo ? String(c.list.dynamo.total) : 'n/a'),
  ],
  ['-- watcher pass, all due, none moved', () => ''],
  ['pass wall time (ms)', (c) => ms(c.unchanged.ms)],
  ['time per watch (ms)', (c) => per(c.unchanged.ms, c.watches)],
  ['upstream HEADs per watch', (c) => per(c.unchanged.upstream.heads, c.watches)],
  ['upstream requests per watch (all kinds)', (c) => per(upstreamTotal(c.unchanged), c.watches)],
  ['DynamoDB requests per watch', (c) => dynamo(c.unchanged, c.watches)],
  ['-- watcher pass, 10% moved', () => ''],
  ['pulls started', (c) => String(c.movedPass.pullsStarted)],
  ['pass wall time (ms)', (c) => ms(c.movedPass.ms)],
  ['until all moved stored (ms)', (c) => ms(c.movedStored.ms)],
  ['upstream GETs per moved tag', (c) => per(gets(c.movedStored), c.moved)],
  ['  manifest GETs per moved tag', (c) => per(c.movedStored.upstream.manifestGets, c.moved)],
  ['  blob GETs per moved tag', (c) => per(c.movedStored.upstream.blobGets, c.moved)],
  ['upstream HEADs per watch', (c) => per(c.movedStored.upstream.heads, c.watches)],
  ['DynamoDB requests per watch', (c) => dynamo(c.movedStored, c.watches)],
  ['-- peer: cron POST /images/create, TTL expired', () => ''],
  ['sequential: wall time (ms)', (c) => ms(c.cronSequential.ms)],
  ['sequential: upstream requests per tag', (c) => per(upstreamTotal(c.cronSequential), c.watches)],
  ['4 at once: wall time (ms)', (c) => ms(c.cronFour.ms)],
  ['4 at once: upstream requests per tag', (c) => per(upstreamTotal(c.cronFour), c.watches)],
  ['4 at once: DynamoDB requests per tag', (c) => dynamo(c.cronFour, c.watches)],
  ['4 at once, 10% moved: wall time (ms)', (c) => ms(c.cronFourMoved.ms)],
  ['4 at once, 10% moved: GETs per moved tag', (c) => per(gets(c.cronFourMoved), c.moved)],
  ['-- side by side (4 at once each)', () => ''],
  ['cron wall / watcher pass, unchanged', (c) => (c.cronFour.ms / c.unchanged.ms).toFixed(2)],
  [
    'cron wall / watcher until stored, moved',
    (c) => (c.cronFourMoved.ms / c.movedStored.ms).toFixed(2),
  ],
];

const LABEL_WIDTH = 42;
const COLUMN_WIDTH = 16;

export function watchReport(results: CaseResult[], machine: string[], totalS: number): string[] {
  const header = results.map((c) => `${c.backend} ${c.watches}`.padStart(COLUMN_WIDTH)).join('');
  const out = [
    '',
    '== watched references: one pass of the schedule vs a cron job of pulls ==',
    ...machine,
    `total run ${totalS.toFixed(0)} s; checks and the cron peer 4 at once; DynamoDB = DynamoDB Local`,
    '',
    `${''.padEnd(LABEL_WIDTH)}${header}`,
    ...ROWS.map(
      ([label, cell]) =>
        `${label.padEnd(LABEL_WIDTH)}${results.map((c) => cell(c).padStart(COLUMN_WIDTH)).join('')}`,
    ),
    '',
    ...growth(results),
  ];
  const heads = results.filter((c) => c.unchanged.upstream.heads !== c.watches);
  out.push(
    heads.length === 0
      ? 'PASS: an unchanged pass sends exactly one manifest HEAD per watch'
      : `FAIL: HEADs per watch differ from 1 in ${heads.map((c) => `${c.backend} ${c.watches}`).join(', ')}`,
  );
  return out;
}

/** Per backend: the largest case against the smallest, for size, pass time and requests. */
function growth(results: CaseResult[]): string[] {
  const lines: string[] = [];
  for (const backend of new Set(results.map((c) => c.backend))) {
    const cases = results
      .filter((c) => c.backend === backend)
      .sort((a, b) => a.watches - b.watches);
    const small = cases[0];
    const large = cases.at(-1);
    if (!small || !large || small === large) continue;
    const size = large.watches / small.watches;
    const ratio = (a: number, b: number) => `${(a / b).toFixed(1)}x`;
    const requests =
      small.unchanged.dynamo && large.unchanged.dynamo
        ? `, DynamoDB requests ${ratio(large.unchanged.dynamo.total, small.unchanged.dynamo.total)}`
        : '';
    lines.push(
      `${backend}: ${size}x the watches -> unchanged pass ${ratio(large.unchanged.ms, small.unchanged.ms)}` +
        `, moved until stored ${ratio(large.movedStored.ms, small.movedStored.ms)}` +
        `, listing ${ratio(large.list.ms, small.list.ms)}` +
        `, cron 4 at once ${ratio(large.cronFour.ms, small.cronFour.ms)}${requests}`,
    );
  }
  return lines;
}
