/**
 * Renders Docker's JSON progress messages the way the docker CLI does (its `jsonmessage`
 * package): in a terminal, one line per layer id rewritten in place with ANSI cursor moves and a
 * progress bar; otherwise one plain line per status change, with byte counts left out.
 */
import { goDuration, humanSize } from './format.ts';

export interface ProgressDetail {
  current?: number;
  total?: number;
  start?: number;
  units?: string;
  hidecounts?: boolean;
}

export interface JsonMessage {
  id?: string;
  status?: string;
  progress?: string;
  progressDetail?: ProgressDetail;
  stream?: string;
  from?: string;
  time?: number;
  timeNano?: number;
  error?: string;
  errorDetail?: { code?: number; message?: string };
  aux?: unknown;
}

/** The stream carried an error message: the pull failed. */
export class ProgressStreamError extends Error {
  override name = 'ProgressStreamError';
}

export interface ProgressWriter {
  write(text: string): unknown;
}

export interface RendererOptions {
  /** Terminal mode: in-place updates and progress bars. */
  tty: boolean;
  /** Terminal width; the bar is drawn only when wider than 110 columns (docker's rule). */
  columns?: number;
  /** Clock for the time-left estimate, in milliseconds. */
  now?: () => number;
}

const ESC = '\x1b[';

/** docker's `JSONProgress.String()`. */
export function progressString(
  detail: ProgressDetail,
  columns: number,
  nowMs: number = Date.now(),
): string {
  const current = detail.current ?? 0;
  const total = detail.total ?? 0;
  if (current <= 0 && total <= 0) return '';
  if (total <= 0) {
    return detail.units ? `${current} ${detail.units}` : humanSize(current).padStart(8);
  }
  const percentage = Math.min(50, Math.trunc(Math.trunc((current / total) * 100) / 2));
  let bar = '';
  if (columns > 110) {
    bar = `[${'='.repeat(percentage)}>${' '.repeat(Math.max(0, 50 - percentage))}] `;
  }
  let numbers = '';
  if (!detail.hidecounts) {
    if (detail.units) {
      numbers =
        current > total ? `${current} ${detail.units}` : `${current}/${total} ${detail.units}`;
    } else {
      const cur = humanSize(current).padStart(8);
      numbers = current > total ? cur : `${cur}/${humanSize(total)}`;
    }
  }
  let timeLeft = '';
  if (current > 0 && detail.start && detail.start > 0 && percentage < 50 && columns > 50) {
    const elapsed = nowMs - detail.start * 1000;
    const left = ((total - current) * elapsed) / current;
    timeLeft = ` ${goDuration(left)}`;
  }
  return bar + numbers + timeLeft;
}

export class PullProgressRenderer {
  readonly #out: ProgressWriter;
  readonly #tty: boolean;
  readonly #columns: number;
  readonly #now: () => number;
  /** Layer id -> its line, counted from the first progress line after the last plain line. */
  #lines = new Map<string, number>();

  constructor(out: ProgressWriter, options: RendererOptions) {
    this.#out = out;
    this.#tty = options.tty;
    this.#columns = options.columns ?? 200;
    this.#now = options.now ?? Date.now;
  }

  /** Render one message; throws ProgressStreamError for an error message. */
  render(message: JsonMessage): void {
    if (message.aux !== undefined) return;
    // Docker's daemon puts progressDetail (`{}` at least) on every layer line and docker keys
    // the in-place block on it; servers that leave it out of "Pull complete" and the like
    // would scramble the block, so any id'd line but the "Pulling from" header counts.
    const detail =
      message.progressDetail ??
      (message.id && !(message.status ?? '').startsWith('Pulling from ') ? {} : undefined);
    let diff = 0;
    if (message.id && (detail || message.progress)) {
      let line = this.#lines.get(message.id);
      if (line === undefined) {
        line = this.#lines.size;
        this.#lines.set(message.id, line);
        if (this.#tty) this.#out.write('\n');
      }
      diff = this.#lines.size - line;
      if (this.#tty) this.#out.write(`${ESC}${diff}A`);
    } else {
      // A line outside the layer block: later progress starts a new block below it.
      this.#lines = new Map();
    }
    try {
      this.#display(message, detail);
    } finally {
      if (message.id && this.#tty && diff > 0) this.#out.write(`${ESC}${diff}B`);
    }
  }

  #display(message: JsonMessage, detail: ProgressDetail | undefined): void {
    if (message.errorDetail || message.error) {
      throw new ProgressStreamError(message.errorDetail?.message || message.error || 'pull failed');
    }
    const progress = detail ? progressString(detail, this.#columns, this.#now()) : '';
    let endl = '';
    if (this.#tty && !message.stream && detail) {
      endl = '\r';
      this.#out.write(`${ESC}2K\r`);
    } else if (detail && progress !== '') {
      return; // byte counts are noise when piped: docker drops them
    }
    let text = '';
    if (message.id) text += `${message.id}: `;
    if (message.from) text += `(from ${message.from}) `;
    const status = message.status ?? '';
    if (detail && this.#tty) text += `${status} ${progress}${endl}`;
    else if (message.progress) text += `${status} ${message.progress}${endl}`;
    else if (message.stream) text += `${message.stream}${endl}`;
    else text += `${status}${endl}\n`;
    this.#out.write(text);
  }
}
