import { z } from 'zod';
import { ErrorCode, GatewayError } from '../errors.js';

/**
 * Reads a service's configuration from environment variables through a zod schema whose keys
 * are the variable names. Defaults are safe for one machine; anything invalid stops the service
 * with a message naming each bad variable and the rule it breaks, never its value: a variable
 * may hold every tenant's secret or key, and start-up errors end up in log systems.
 */
/**
 * Variables that may hold keys or tenants' secrets. Once read they are removed from this
 * process's environment, so no child process (ffmpeg parsing untrusted media) can inherit them,
 * whatever it is given; in a cluster they come as files (`GATEWAY_TENANT_KEYS_FILE`,
 * `GATEWAY_KMS_KEYS_FILE`, `GATEWAY_TENANTS_FILE`) instead, and the manifests' rules
 * (test/k8s) refuse any of them as a container's variable.
 */
export const SECRET_VARIABLES: ReadonlySet<string> = new Set(['GATEWAY_TENANT_KEYS', 'GATEWAY_KMS_KEYS', 'GATEWAY_TENANTS']);

export function loadConfig<S extends z.ZodRawShape>(shape: S, env: Record<string, string | undefined> = process.env): z.infer<z.ZodObject<S>> {
  const input: Record<string, string | undefined> = {};
  for (const key of Object.keys(shape)) {
    const value = env[key];
    // An empty variable means "not set", so `FOO= make up` falls back to the default.
    input[key] = value === '' ? undefined : value;
  }
  const result = z.object(shape).safeParse(input);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const variable = String(issue.path[0] ?? '?');
      const where = issue.path.length > 1 ? ` at ${issue.path.slice(1).join('.')}` : '';
      return `${variable}${where}: ${issue.message}`;
    });
    throw new GatewayError(ErrorCode.CONFIG_INVALID, `invalid configuration:\n  ${problems.join('\n  ')}`);
  }
  if (env === process.env) for (const key of Object.keys(shape)) if (SECRET_VARIABLES.has(key)) delete process.env[key];
  return result.data;
}

/** Common field types for environment variables. */
export const env = {
  port: (fallback: number) => z.coerce.number().int().min(0).max(65535).default(fallback),
  positiveInt: (fallback: number) => z.coerce.number().int().positive().default(fallback),
  seconds: (fallback: number) => z.coerce.number().nonnegative().default(fallback),
  boolean: (fallback: boolean) =>
    z
      .enum(['true', 'false', '1', '0', 'yes', 'no'])
      .default(fallback ? 'true' : 'false')
      .transform((v) => v === 'true' || v === '1' || v === 'yes'),
  string: (fallback: string) => z.string().min(1).default(fallback),
  logLevel: () => z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
};
