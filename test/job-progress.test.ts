import { describe, expect, it } from 'vitest';
import { ProgressDiff, ProgressLog } from '../lib/jobs/progress-log.ts';

describe('job progress: compaction and following', () => {
  it('keeps the latest message per layer in first-seen order, then the status lines', () => {
    const log = new ProgressLog();
    expect(log.add({ status: 'Pulling from library/x', id: '1' })).toBe(true);
    expect(log.add({ status: 'Pulling fs layer', id: 'aaa' })).toBe(true);
    expect(log.add({ status: 'Pulling fs layer', id: 'bbb' })).toBe(true);
    expect(
      log.add({ status: 'Downloading', id: 'bbb', progressDetail: { current: 1, total: 9 } }),
    ).toBe(true);
    // Only the byte count moved: not a state change, the throttled write carries it.
    expect(
      log.add({ status: 'Downloading', id: 'bbb', progressDetail: { current: 5, total: 9 } }),
    ).toBe(false);
    expect(log.add({ status: 'Digest: sha256:abc' })).toBe(true);
    expect(log.snapshot()).toEqual({
      layers: [
        { status: 'Pulling from library/x', id: '1' },
        { status: 'Pulling fs layer', id: 'aaa' },
        { status: 'Downloading', id: 'bbb', progressDetail: { current: 5, total: 9 } },
      ],
      lines: [{ status: 'Digest: sha256:abc' }],
      linesSeen: 1,
    });
  });

  it('hands a follower each change once, and only the lines it has not seen', () => {
    const log = new ProgressLog();
    const diff = new ProgressDiff();
    log.add({ status: 'Pulling fs layer', id: 'aaa' });
    log.add({ status: 'warning one' });
    expect(diff.next(log.snapshot())).toEqual([
      { status: 'Pulling fs layer', id: 'aaa' },
      { status: 'warning one' },
    ]);
    expect(diff.next(log.snapshot())).toEqual([]);
    log.add({ status: 'Pull complete', id: 'aaa' });
    for (let i = 0; i < 30; i++) log.add({ status: `line ${i}` });
    const next = diff.next(log.snapshot());
    // 30 new lines, of which the log keeps the last 20: those, after the changed layer.
    expect(next[0]).toEqual({ status: 'Pull complete', id: 'aaa' });
    expect(next.slice(1).map((m) => m.status)).toEqual(
      Array.from({ length: 20 }, (_, i) => `line ${i + 10}`),
    );
    expect(diff.next(log.snapshot())).toEqual([]);
  });

  it('resumes from a stored snapshot (a worker taking a job over)', () => {
    const first = new ProgressLog();
    first.add({ status: 'Pulling fs layer', id: 'aaa' });
    first.add({ status: 'one' });
    const resumed = new ProgressLog(first.snapshot());
    resumed.add({ status: 'two' });
    expect(resumed.snapshot()).toEqual({
      layers: [{ status: 'Pulling fs layer', id: 'aaa' }],
      lines: [{ status: 'one' }, { status: 'two' }],
      linesSeen: 2,
    });
  });
});
