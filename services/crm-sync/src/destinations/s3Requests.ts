import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCode, GatewayError, type Logger, backoffDelayMs } from '@gateway/common';

/** How S3 requests are retried. */
export interface S3RetryPolicy {
  /** Attempts of each request on 5xx (503 SlowDown), timeouts and dropped connections. */
  maxAttempts: number;
  retryBaseMs: number;
  retryMaxMs: number;
  log: Logger;
}

/** Sends one S3 request under the destination's retry policy (see sendWithRetries). */
export type S3Call = <T>(operation: string, send: () => Promise<T>, context: Record<string, unknown>) => Promise<T>;

/**
 * One S3 request, retried on 5xx (503 SlowDown), 429, timeouts and dropped connections with
 * backoff and jitter; anything else, or the last failure, is DESTINATION_FAILED naming S3's
 * error code only (its messages can quote keys). A GatewayError thrown by `send` passes as it is.
 */
export async function sendWithRetries<T>(operation: string, send: () => Promise<T>, context: Record<string, unknown>, policy: S3RetryPolicy): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await send();
    } catch (error) {
      if (error instanceof GatewayError) throw error;
      const failure = failureOf(error);
      if (!failure.retryable || attempt >= policy.maxAttempts) {
        const message = failure.retryable ? `S3 ${operation} failed ${attempt} times: ${failure.reason}` : `S3 refused ${operation}: ${failure.reason}`;
        throw new GatewayError(ErrorCode.DESTINATION_FAILED, message, { cause: error, details: { s3Code: failure.code } });
      }
      const retryInMs = backoffDelayMs(attempt - 1, { initialMs: policy.retryBaseMs, maxMs: policy.retryMaxMs });
      policy.log.warn({ ...context, operation, attempt, code: failure.code, retryInMs }, 'S3 request failed; retrying');
      await sleep(retryInMs);
    }
  }
}

/** The HTTP status S3 answered a failed request with; undefined when no answer came. */
export function statusOf(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
}

/** What went wrong, by S3 error code or network error name only: never a message, a key or a body. */
function failureOf(error: unknown): { code: string; retryable: boolean; reason: string } {
  const name = error instanceof Error ? error.name : 'Error';
  const status = statusOf(error);
  if (status !== undefined) {
    const code = /^[A-Za-z0-9.]{1,64}$/.test(name) && name !== 'Error' && name !== 'Unknown' ? name : `HTTP${status}`;
    // A conditional write that met another write to its key is to be tried again (AWS S3 conditional writes).
    const retryable = status >= 500 || status === 429 || code === 'RequestTimeout' || code === 'ConditionalRequestConflict';
    return { code, retryable, reason: `${code} (HTTP ${status})` };
  }
  const errno = (error as { code?: unknown }).code;
  // The SDK names a reset connection a TimeoutError too: its errno tells them apart.
  if (typeof errno === 'string' && /^E[A-Z_]+$/.test(errno) && errno !== 'ETIMEDOUT') return { code: errno, retryable: true, reason: `connection failed (${errno})` };
  if (name === 'TimeoutError' || errno === 'ETIMEDOUT') return { code: 'Timeout', retryable: true, reason: 'no answer in time' };
  return { code: name, retryable: false, reason: name };
}

/** The Content-MD5 of a request body: S3 checks what it received against it. */
export function md5Base64(data: Buffer): string {
  return createHash('md5').update(data).digest('base64');
}
