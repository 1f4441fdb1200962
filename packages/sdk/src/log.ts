import { GatewayError } from './errors.js';

/** Reports, in the app's console, something the SDK gave up on without an app call to reject. */
export function warn(message: string, error: unknown): void {
  const code = error instanceof GatewayError ? error.code : (error as { name?: string } | undefined)?.name;
  console.warn(`[gateway] ${message}: ${code ?? 'error'}`, error);
}
