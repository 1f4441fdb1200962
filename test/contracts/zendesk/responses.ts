/** The shapes Zendesk answers in: error bodies and offset pagination. */

/** What an endpoint answers; the server adds the JSON content type and the rate-limit headers. */
export interface Reply {
  status: number;
  /** JSON, or the bytes of an attachment. */
  body: unknown;
  headers?: Record<string, string>;
}

export type ValidationDetails = Record<string, Array<{ error: string; description: string }>>;

/** Zendesk's error bodies: `{error, description}`, with `details` for validation (422). */
export const errorBody = (error: string, description: string, details?: ValidationDetails) => ({ error, description, ...(details ? { details } : {}) });

export const notFound = (error = 'RecordNotFound'): Reply => ({ status: 404, body: errorBody(error, 'Not found') });

type Page<K extends string, T> = Record<K, T[]> & { next_page: string | null; previous_page: string | null; count: number };

/** Offset pagination ("Pagination"): `per_page` up to 100, `page`, `next_page` as a full URL on `baseUrl`. */
export function page<K extends string, T>(key: K, all: T[], query: URLSearchParams, path: string, baseUrl: string): Page<K, T> {
  const perPage = Math.min(100, Math.max(1, Number(query.get('per_page') ?? 100) || 100));
  const current = Math.max(1, Number(query.get('page') ?? 1) || 1);
  const at = (n: number) => {
    const next = new URL(`${path}.json`, baseUrl);
    for (const [k, v] of query) next.searchParams.set(k, v);
    next.searchParams.set('page', String(n));
    return next.toString();
  };
  return {
    [key]: all.slice((current - 1) * perPage, current * perPage),
    next_page: current * perPage < all.length ? at(current + 1) : null,
    previous_page: current > 1 ? at(current - 1) : null,
    count: all.length,
  } as Page<K, T>;
}
