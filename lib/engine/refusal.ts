import { ForbiddenError, UnauthorizedError, WWW_AUTHENTICATE } from '../auth/access.ts';
import { errorResponse, type HttpRequest, type HttpResponse } from './http.ts';

/** The answer to a request the check refused; undefined for every other error. */
export function refusalResponse(error: unknown, request: HttpRequest): HttpResponse | undefined {
  if (!(error instanceof UnauthorizedError || error instanceof ForbiddenError)) return undefined;
  // Drain an upload we refused, so the client reads the answer rather than a reset.
  request.body?.resume();
  const response = errorResponse(error);
  if (error instanceof ForbiddenError) return response;
  return { ...response, headers: { ...response.headers, 'WWW-Authenticate': WWW_AUTHENTICATE } };
}
