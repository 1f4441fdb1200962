import { pino, type Logger } from 'pino';
import { traceFields } from '../telemetry/tracing.js';

export type { Logger };

/**
 * Field names that may hold personal data or secrets. Logs go to third-party systems, so these
 * are censored wherever they appear, even if a caller forgets.
 */
const redactedFields = ['token', 'resumeToken', 'secret', 'apiSecret', 'password', 'authorization', 'identity', 'name', 'email', 'phone', 'phoneNumber', 'text', 'body'];

/** Lines go to stdout, or to stderr with `stderr` (a CLI whose stdout is its report). */
export function createLogger(service: string, level: string = process.env.LOG_LEVEL ?? 'info', options: { stderr?: boolean } = {}): Logger {
  const settings: pino.LoggerOptions = {
    level,
    base: { service },
    redact: {
      paths: [...redactedFields, ...redactedFields.map((f) => `*.${f}`)],
      censor: '[redacted]',
    },
    timestamp: pino.stdTimeFunctions.isoTime,
    // A line written inside a traced request names its trace, so logs and traces meet.
    mixin: traceFields,
  };
  return options.stderr ? pino(settings, pino.destination(2)) : pino(settings);
}
