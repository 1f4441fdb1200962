import { pino, type Logger } from 'pino';
import { traceFields } from './telemetry/tracing.js';

export type { Logger };

/**
 * Field names that may hold personal data or secrets. Logs go to third-party systems, so these
 * are censored wherever they appear, even if a caller forgets.
 */
const redactedFields = [
  'token', 'resumeToken', 'secret', 'apiSecret', 'password', 'authorization',
  'identity', 'name', 'email', 'phone', 'phoneNumber', 'text', 'body',
];

export function createLogger(service: string, level: string = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino({
    level,
    base: { service },
    redact: {
      paths: [...redactedFields, ...redactedFields.map((f) => `*.${f}`)],
      censor: '[redacted]',
    },
    timestamp: pino.stdTimeFunctions.isoTime,
    // A line written inside a traced request names its trace, so logs and traces meet.
    mixin: traceFields,
  });
}
