/**
 * The dashboard's stylesheet, served as /cache/ui/app.<hash>.css. Colours meet WCAG AA contrast
 * on their backgrounds (text at least 4.5:1), focus stays visible for keyboard users, and a dark
 * scheme follows the system setting.
 */
export const STYLE = `
:root { color-scheme: light dark; --fg: #1b1f24; --muted: #4d5560; --bg: #ffffff; --panel: #f4f6f8;
  --line: #c9d0d8; --accent: #0b5cad; --warn: #9a3b00; --bar: #2f6fb3; --focus: #c2410c; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e8ecf0; --muted: #b4bcc6; --bg: #111418; --panel: #1b2027; --line: #3a434e;
    --accent: #8cc4ff; --warn: #ffb37a; --bar: #6aa8ec; --focus: #ffb37a; }
}
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; flex-wrap: wrap; gap: 0.75rem; align-items: center; padding: 0.75rem 1.25rem; border-bottom: 1px solid var(--line); }
header h1 { font-size: 1.2rem; margin: 0 auto 0 0; }
main { padding: 1rem 1.25rem 3rem; max-width: 80rem; margin: 0 auto; }
section { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 0.75rem 1rem 1rem; margin: 0 0 1rem; }
h2 { font-size: 1.05rem; margin: 0.25rem 0 0.75rem; }
h3 { font-size: 0.9rem; margin: 0.75rem 0 0.25rem; color: var(--muted); }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(18rem, 1fr)); gap: 1rem; }
dl { display: flex; flex-wrap: wrap; gap: 0.5rem 2rem; margin: 0 0 0.75rem; }
dt { color: var(--muted); font-size: 0.85rem; }
dd { margin: 0; font-size: 1.15rem; font-variant-numeric: tabular-nums; }
.note, #status { color: var(--muted); }
.warn { color: var(--warn); }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 0.35rem 0.5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
tbody th { font-weight: normal; word-break: break-all; }
thead th { white-space: nowrap; }
th button { font: inherit; font-weight: 600; color: var(--fg); background: none; border: 0; padding: 0; cursor: pointer; }
th[aria-sort="ascending"] button::after { content: " \\25B2"; }
th[aria-sort="descending"] button::after { content: " \\25BC"; }
button, input { font: inherit; }
header button, form button { color: var(--bg); background: var(--accent); border: 1px solid var(--accent); border-radius: 4px; padding: 0.3rem 0.8rem; cursor: pointer; }
input { color: var(--fg); background: var(--bg); border: 1px solid var(--muted); border-radius: 4px; padding: 0.3rem 0.5rem; }
label { display: block; margin: 0 0 0.25rem; font-weight: 600; }
:focus-visible { outline: 3px solid var(--focus); outline-offset: 2px; }
[hidden] { display: none !important; }
#login form { display: flex; flex-wrap: wrap; gap: 0.5rem; align-items: end; }
#login-error { color: var(--warn); font-weight: 600; width: 100%; margin: 0.25rem 0 0; }
.filter { margin: 0 0 0.5rem; max-width: 24rem; }
.filter input { width: 100%; }
svg.plot { width: 100%; height: auto; max-height: 14rem; display: block; }
svg .axis { stroke: var(--muted); }
svg .bar { fill: var(--bar); }
svg .series { fill: none; stroke: var(--bar); stroke-width: 2; }
svg .dot { fill: var(--bar); }
svg .budget { stroke: var(--warn); stroke-dasharray: 6 4; }
svg .tick { fill: var(--muted); font-size: 11px; }
.table-wrap { overflow-x: auto; }
`;
