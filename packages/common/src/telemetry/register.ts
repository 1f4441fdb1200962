/**
 * Loaded before a service's own code, so that the context manager and propagator are in place
 * before anything runs (node awaits a module given to --import before it runs the entry):
 *
 *   node --import tsx --import @gateway/common/telemetry/register services/<name>/src/main.ts
 *
 * Configured by the standard OTEL_ variables only; see sdk.ts for the defaults.
 */
import { startTelemetry } from './sdk.js';

await startTelemetry();
