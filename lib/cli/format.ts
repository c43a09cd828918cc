/**
 * Text formatting that must match what the docker CLI prints, byte for byte: go-units sizes and
 * durations, Go's `%g`, Go's JSON escaping and the tabwriter layout of docker's tables.
 */

/** docker's short image ID: the hex after `sha256:`, 12 characters, unless `--no-trunc`. */
export function shortImageId(id: string, noTrunc = false): string {
  if (noTrunc) return id;
  const colon = id.indexOf(':');
  return (colon === -1 ? id : id.slice(colon + 1)).slice(0, 12);
}

/** Go's `fmt.Sprintf("%.*g", precision, value)`, including round-half-even on exact ties. */
export function formatG(value: number, precision: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (!Number.isFinite(value)) return value > 0 ? '+Inf' : '-Inf';
  if (value === 0) return '0';
  const p = Math.max(1, precision);
  const sign = value < 0 ? '-' : '';
  // 101 significant digits: exact for every double below ~1e21, which covers all sizes here.
  const [mantissa = '', expText = '0'] = Math.abs(value).toExponential(100).split('e');
  let exp = Number(expText);
  const all = mantissa.replace('.', '');
  let digits = all.slice(0, p);
  const next = all[p] ?? '0';
  const beyond = all.slice(p + 1);
  const lastOdd = Number(digits[digits.length - 1]) % 2 === 1;
  const roundUp = next > '5' || (next === '5' && (/[1-9]/.test(beyond) || lastOdd));
  if (roundUp) {
    const incremented = (BigInt(digits) + 1n).toString();
    if (incremented.length > digits.length) {
      exp += 1;
      digits = incremented.slice(0, p);
    } else {
      digits = incremented;
    }
  }
  digits = digits.replace(/0+$/, '') || '0';
  if (exp < -4 || exp >= p) {
    const frac = digits.slice(1);
    const absExp = Math.abs(exp).toString().padStart(2, '0');
    return `${sign}${digits[0]}${frac ? `.${frac}` : ''}e${exp < 0 ? '-' : '+'}${absExp}`;
  }
  if (exp < 0) return `${sign}0.${'0'.repeat(-exp - 1)}${digits}`;
  const intPart = digits.slice(0, exp + 1).padEnd(exp + 1, '0');
  const fracPart = digits.slice(exp + 1);
  return `${sign}${intPart}${fracPart ? `.${fracPart}` : ''}`;
}

const DECIMAL_UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB', 'ZB', 'YB'];

/** go-units `HumanSizeWithPrecision`: decimal units, `precision` significant digits. */
export function humanSizeWithPrecision(size: number, precision: number): string {
  let value = size;
  let unit = 0;
  while (value >= 1000 && unit < DECIMAL_UNITS.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${formatG(value, precision)}${DECIMAL_UNITS[unit]}`;
}

/** go-units `HumanSize` (4 significant digits), used by docker's progress bars. */
export function humanSize(size: number): string {
  return humanSizeWithPrecision(size, 4);
}

/** go-units `HumanDuration`, for a duration in milliseconds. */
export function humanDuration(ms: number): string {
  const seconds = Math.trunc(ms / 1000);
  if (seconds < 1) return 'Less than a second';
  if (seconds === 1) return '1 second';
  if (seconds < 60) return `${seconds} seconds`;
  const minutes = Math.trunc(ms / 60_000);
  if (minutes === 1) return 'About a minute';
  if (minutes < 60) return `${minutes} minutes`;
  // Go's Duration.Round rounds halves away from zero; ms is positive here.
  const hours = Math.floor(ms / 3_600_000 + 0.5);
  if (hours === 1) return 'About an hour';
  if (hours < 48) return `${hours} hours`;
  if (hours < 24 * 7 * 2) return `${Math.trunc(hours / 24)} days`;
  if (hours < 24 * 30 * 2) return `${Math.trunc(hours / 24 / 7)} weeks`;
  if (hours < 24 * 365 * 2) return `${Math.trunc(hours / 24 / 30)} months`;
  return `${Math.trunc(Math.trunc(ms / 3_600_000) / 24 / 365)} years`;
}

/** "2 hours ago" for a Unix timestamp in seconds, as docker's CREATED columns show it. */
export function createdSince(createdSeconds: number, nowMs: number): string {
  return `${humanDuration(nowMs - createdSeconds * 1000)} ago`;
}

/** Go's `time.Duration.String()` for whole seconds: "0s", "42s", "1m30s", "2h0m5s". */
export function goDuration(ms: number): string {
  let seconds = Math.trunc(ms / 1000);
  if (seconds === 0) return '0s';
  const sign = seconds < 0 ? '-' : '';
  seconds = Math.abs(seconds);
  const h = Math.trunc(seconds / 3600);
  const m = Math.trunc((seconds % 3600) / 60);
  const s = seconds % 60;
  if (h > 0) return `${sign}${h}h${m}m${s}s`;
  if (m > 0) return `${sign}${m}m${s}s`;
  return `${sign}${s}s`;
}

function pad2(n: number): string {
  return n.toString().padStart(2, '0');
}

function offsetText(offsetMinutes: number, colon: boolean): string {
  const sign = offsetMinutes < 0 ? '-' : '+';
  const abs = Math.abs(offsetMinutes);
  return `${sign}${pad2(Math.trunc(abs / 60))}${colon ? ':' : ''}${pad2(abs % 60)}`;
}

function localParts(seconds: number): { date: Date; offset: number } {
  const date = new Date(seconds * 1000);
  return { date, offset: -date.getTimezoneOffset() };
}

function localDateTime(date: Date, sep: string): string {
  const ymd = `${date.getFullYear()}-${pad2(date.getMonth() + 1)}-${pad2(date.getDate())}`;
  return `${ymd}${sep}${pad2(date.getHours())}:${pad2(date.getMinutes())}:${pad2(date.getSeconds())}`;
}

/** Go's `time.Unix(s, 0).Format(time.RFC3339)` in local time: `2024-05-01T10:00:00+02:00`. */
export function rfc3339(seconds: number): string {
  const { date, offset } = localParts(seconds);
  return `${localDateTime(date, 'T')}${offset === 0 ? 'Z' : offsetText(offset, true)}`;
}

/** Go's `time.Time.String()` in local time: `2024-05-01 10:00:00 +0200 CEST`. */
export function goTimeString(seconds: number): string {
  const { date, offset } = localParts(seconds);
  const zone =
    new Intl.DateTimeFormat('en-US', { timeZoneName: 'short' })
      .formatToParts(date)
      .find((part) => part.type === 'timeZoneName')?.value ?? '';
  // Intl names zones without an abbreviation "GMT+2"; Go prints the bare offset then.
  const name =
    offset === 0 ? 'UTC' : /^GMT[+-]/.test(zone) || zone === '' ? offsetText(offset, false) : zone;
  return `${localDateTime(date, ' ')} ${offsetText(offset, false)} ${name}`;
}

/** Go's `encoding/json` output: like JSON.stringify but with `<`, `>`, `&`, U+2028/9 escaped. */
export function goJson(value: unknown, indent?: string): string {
  const text = JSON.stringify(value, null, indent) ?? 'null';
  return text.replace(
    /[<>&\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** Display width as Go's tabwriter counts it: one per code point. */
function width(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/** docker-style ellipsis: keep `max - 1` characters and add "…" when the text is longer. */
export function ellipsis(text: string, max: number): string {
  const chars = Array.from(text);
  if (chars.length <= max) return text;
  if (max <= 0) return '';
  return `${chars.slice(0, max - 1).join('')}…`;
}

export interface TabwriterOptions {
  minWidth?: number;
  padding?: number;
}

/**
 * Go's `text/tabwriter` as docker configures it (`NewWriter(out, 10, 1, 3, ' ', 0)`): cells are
 * tab-separated, every cell but a line's last is padded to its column block's width, and a
 * column block is a run of consecutive lines that have a cell in that column.
 */
export function tabwrite(text: string, options: TabwriterOptions = {}): string {
  const minWidth = options.minWidth ?? 10;
  const padding = options.padding ?? 3;
  const endsWithNewline = text.endsWith('\n');
  const lines = (endsWithNewline ? text.slice(0, -1) : text).split('\n').map((l) => l.split('\t'));
  const out: string[] = [];
  const widths: number[] = [];

  const writeLines = (from: number, to: number) => {
    for (let i = from; i < to; i++) {
      const cells = lines[i] ?? [];
      let line = '';
      cells.forEach((cell, j) => {
        const cellWidth = widths[j];
        line += cellWidth === undefined ? cell : cell + ' '.repeat(cellWidth - width(cell));
      });
      out.push(line);
    }
  };

  const format = (start: number, end: number) => {
    let line0 = start;
    const column = widths.length;
    for (let i = start; i < end; i++) {
      if (column >= (lines[i]?.length ?? 0) - 1) continue;
      writeLines(line0, i);
      line0 = i;
      let w = minWidth;
      for (; i < end; i++) {
        const cells = lines[i] ?? [];
        if (column >= cells.length - 1) break;
        w = Math.max(w, width(cells[column] ?? '') + padding);
      }
      widths.push(w);
      format(line0, i);
      widths.pop();
      line0 = i;
      i--; // the outer loop's increment must not skip line `i`
    }
    writeLines(line0, end);
  };

  format(0, lines.length);
  return out.join('\n') + (endsWithNewline ? '\n' : '');
}

/** Lay rows out as a docker table (header first), ending with a newline. */
export function table(rows: readonly (readonly string[])[]): string {
  if (rows.length === 0) return '';
  return tabwrite(`${rows.map((r) => r.join('\t')).join('\n')}\n`);
}
