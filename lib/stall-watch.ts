/**
 * A download whose every waiting client left goes on while it makes progress, so the next
 * request finds the blob stored; one that brings fewer than `minBytes` in a window of
 * `windowMs` is given up. An upstream dripping a byte a second would otherwise hold a
 * connection, a temp file and a download slot for hours.
 */
export interface AbandonPolicy {
  windowMs: number;
  minBytes: number;
}

export const DEFAULT_ABANDON: AbandonPolicy = { windowMs: 30_000, minBytes: 256 * 1024 };

const TICKS = 10;

/**
 * Calls `abandon` with the bytes moved in the last window once a whole window went by with
 * fewer than `minBytes` while `someoneWaits()` said no. Answers a function that stops watching.
 */
export function watchForStall(
  policy: AbandonPolicy,
  seen: () => number,
  someoneWaits: () => boolean,
  abandon: (moved: number) => void,
): () => void {
  // Bytes seen at each of the last TICKS + 1 samples: their spread covers one window.
  const marks: number[] = [seen()];
  const timer = setInterval(() => {
    marks.push(seen());
    if (marks.length > TICKS + 1) marks.shift();
    if (marks.length <= TICKS) return;
    const moved = marks.at(-1)! - marks[0]!;
    if (moved >= policy.minBytes || someoneWaits()) return;
    clearInterval(timer);
    abandon(moved);
  }, policy.windowMs / TICKS);
  timer.unref();
  return () => clearInterval(timer);
}
