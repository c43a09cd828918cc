/**
 * The small part of Go's text/template that `--format` strings use in practice: `{{.Field}}`,
 * `{{.A.B}}`, `{{.}}`, `{{json .X}}`, `{{upper .X}}`/`{{lower .X}}`, plus docker's `table`
 * prefix and its `\t` / `\n` escapes. Anything else is refused rather than printed wrong.
 */
import { UsageError } from './args.ts';
import { goJson, tabwrite } from './format.ts';

type Piece = { text: string } | { func?: 'json' | 'upper' | 'lower'; path: string[] };

export interface Template {
  /** The format had docker's `table` prefix: output goes through the tabwriter with a header. */
  table: boolean;
  pieces: Piece[];
}

const ACTION = /\{\{-?\s*(.*?)\s*-?\}\}/g;

export function parseTemplate(format: string): Template {
  let body = format;
  let table = false;
  if (body === 'table' || body.startsWith('table ')) {
    table = true;
    body = body.slice('table'.length).trim();
  }
  body = body.replaceAll('\\t', '\t').replaceAll('\\n', '\n');
  const pieces: Piece[] = [];
  let last = 0;
  for (const match of body.matchAll(ACTION)) {
    if (match.index > last) pieces.push({ text: body.slice(last, match.index) });
    pieces.push(parseAction(match[1] ?? '', format));
    last = match.index + match[0].length;
  }
  if (last < body.length) pieces.push({ text: body.slice(last) });
  return { table, pieces };
}

function parseAction(action: string, format: string): Piece {
  const words = action.split(/\s+/).filter(Boolean);
  let func: 'json' | 'upper' | 'lower' | undefined;
  if (words.length === 2 && (words[0] === 'json' || words[0] === 'upper' || words[0] === 'lower')) {
    func = words[0];
    words.shift();
  }
  const [field] = words;
  if (words.length !== 1 || field === undefined || !field.startsWith('.')) {
    throw new UsageError(
      `unsupported template action {{${action}}} in format ${JSON.stringify(format)}`,
    );
  }
  const path = field === '.' ? [] : field.slice(1).split('.');
  return func ? { func, path } : { path };
}

/** The field names the template reads at the top level, in order (used to build table headers). */
export function templateFields(template: Template): string[] {
  return template.pieces.flatMap((p) => ('path' in p && p.path[0] ? [p.path[0]] : []));
}

function lookup(value: unknown, path: readonly string[]): unknown {
  let current = value;
  for (const key of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string, unknown>)[key];
  }
  return current;
}

function plain(value: unknown): string {
  if (value === undefined || value === null) return '<no value>';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return `[${value.map(plain).join(' ')}]`;
  return `map[${Object.entries(value as Record<string, unknown>)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([k, v]) => `${k}:${plain(v)}`)
    .join(' ')}]`;
}

export function renderTemplate(template: Template, value: unknown): string {
  let out = '';
  for (const piece of template.pieces) {
    if ('text' in piece) {
      out += piece.text;
      continue;
    }
    const field = lookup(value, piece.path);
    if (piece.func === 'json') out += goJson(field ?? null);
    else if (piece.func === 'upper') out += plain(field).toUpperCase();
    else if (piece.func === 'lower') out += plain(field).toLowerCase();
    else out += plain(field);
  }
  return out;
}

/**
 * A list as docker's `--format` renders it: `json` is one JSON object per line, `table` (or no
 * format) the command's own table template, anything else the caller's Go template.
 */
/** The `--format` help of the listing commands, as docker words it. */
export const LIST_FORMAT_HELP = `Format output using a custom template:
'table':            Print output in table format with column headers (default)
'table TEMPLATE':   Print output in table format using the given Go template
'json':             Print in JSON format
'TEMPLATE':         Print output using the given Go template`;

export function renderRows(
  rows: readonly unknown[],
  format: string | undefined,
  tableTemplate: string,
  headers: Readonly<Record<string, string>>,
): string {
  const chosen = format || 'table';
  if (chosen === 'json') return jsonLines(rows);
  return renderAll(parseTemplate(chosen === 'table' ? tableTemplate : chosen), rows, headers);
}

/** One JSON object per line, as docker's `--format json` prints a list. */
export function jsonLines(values: readonly unknown[]): string {
  return values.map((value) => `${goJson(value)}\n`).join('');
}

/**
 * Render one line per value; a `table` template gets a header line from `headers` (docker's
 * names for each field) and is laid out by the tabwriter.
 */
export function renderAll(
  template: Template,
  values: readonly unknown[],
  headers: Readonly<Record<string, string>>,
): string {
  const lines = values.map((v) => `${renderTemplate(template, v)}\n`);
  if (!template.table) return lines.join('');
  const headerValues: Record<string, string> = {};
  for (const field of templateFields(template)) {
    headerValues[field] = headers[field] ?? field.toUpperCase();
  }
  const headerTemplate: Template = {
    table: true,
    pieces: template.pieces.map((p) =>
      'text' in p ? p : { path: p.path.length > 0 ? [p.path[0] ?? ''] : [] },
    ),
  };
  const header = `${renderTemplate(headerTemplate, headerValues)}\n`;
  return tabwrite(header + lines.join(''));
}
