import type { HttpResponse } from './http.ts';

/** Docker's answer to a load: one `{"stream"}` line per loaded image or tag. */
export function loadedResponse(messages: string[]): HttpResponse {
  const lines = messages.map((m) => `${JSON.stringify({ stream: `${m}\n` })}\r\n`);
  return { status: 200, headers: { 'Content-Type': 'application/json' }, body: lines.join('') };
}
