/**
 * A one-line byte progress bar for transfers (save, load): bytes so far, rate, and the total
 * with a bar and ETA when it is known. Redraws in place with `\r` at most every `intervalMs`,
 * only on a terminal; elsewhere it stays silent so redirected stderr holds no control codes.
 *
 *   const bar = new ProgressBar(ctx.stderr, { label: 'Saving', total, now: ctx.now });
 *   bar.update(received);  // as bytes arrive (cumulative)
 *   bar.done();            // final line and newline (or bar.clear() on failure)
 */
import type { Output } from './context.ts';
import { humanDuration, humanSize } from './format.ts';

export interface ProgressBarOptions {
  /** Word in front of the bar: `Saving`, `Loading`. */
  label: string;
  /** Expected bytes (Content-Length, file size); omit when unknown (stdin, chunked). */
  total?: number;
  /** Milliseconds since the epoch; injectable for tests. */
  now?: () => number;
  /** Draw even when `out.isTTY` is false (tests). */
  force?: boolean;
  /** Minimum milliseconds between redraws; default 100. */
  intervalMs?: number;
}

const BAR_WIDTH = 30;

export class ProgressBar {
  readonly #out: Output;
  readonly #label: string;
  readonly #total: number | undefined;
  readonly #now: () => number;
  readonly #enabled: boolean;
  readonly #intervalMs: number;
  readonly #started: number;
  #current = 0;
  #lastDraw = Number.NEGATIVE_INFINITY;
  #lastWidth = 0;
  #finished = false;

  constructor(out: Output, options: ProgressBarOptions) {
    this.#out = out;
    this.#label = options.label;
    this.#total = options.total !== undefined && options.total > 0 ? options.total : undefined;
    this.#now = options.now ?? Date.now;
    this.#enabled = options.force === true || out.isTTY === true;
    this.#intervalMs = options.intervalMs ?? 100;
    this.#started = this.#now();
  }

  get enabled(): boolean {
    return this.#enabled;
  }

  /** Sets the cumulative byte count; redraws when enough time passed. */
  update(current: number): void {
    this.#current = current;
    if (!this.#enabled || this.#finished) return;
    const now = this.#now();
    if (now - this.#lastDraw < this.#intervalMs) return;
    this.#lastDraw = now;
    this.#draw(this.render(now));
  }

  /** Adds to the byte count. */
  add(bytes: number): void {
    this.update(this.#current + bytes);
  }

  /** Draws the final state and ends the line. */
  done(): void {
    if (!this.#enabled || this.#finished) return;
    this.#finished = true;
    this.#draw(this.render(this.#now(), true));
    this.#out.write('\n');
  }

  /** Erases the line (before printing an error). */
  clear(): void {
    if (!this.#enabled || this.#finished) return;
    this.#finished = true;
    if (this.#lastWidth > 0) this.#out.write(`\r${' '.repeat(this.#lastWidth)}\r`);
  }

  /** The line for the current state, e.g. `Saving [=====>    ] 12.3MB/45.6MB 8.1MB/s 4 seconds left`. */
  render(now = this.#now(), final = false): string {
    const elapsedMs = Math.max(1, now - this.#started);
    const rate = (this.#current / elapsedMs) * 1000;
    const rateText = `${humanSize(rate)}/s`;
    const total = this.#total;
    if (total === undefined) {
      return `${this.#label} ${humanSize(this.#current)} ${rateText}`;
    }
    const fraction = Math.min(1, this.#current / total);
    const filled = Math.floor(fraction * BAR_WIDTH);
    const bar =
      filled >= BAR_WIDTH
        ? '='.repeat(BAR_WIDTH)
        : `${'='.repeat(filled)}>${' '.repeat(BAR_WIDTH - filled - 1)}`;
    let line = `${this.#label} [${bar}] ${humanSize(this.#current)}/${humanSize(total)} ${rateText}`;
    if (!final && rate > 0 && this.#current < total) {
      line += ` ${humanDuration(((total - this.#current) / rate) * 1000)} left`;
    } else if (final) {
      line += ` in ${humanDuration(elapsedMs)}`;
    }
    return line;
  }

  #draw(line: string) {
    // Pad over the tail of a longer previous line rather than relying on terminal erase codes.
    const pad = Math.max(0, this.#lastWidth - line.length);
    this.#out.write(`\r${line}${' '.repeat(pad)}`);
    this.#lastWidth = line.length;
  }
}
