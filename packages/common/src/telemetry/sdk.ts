import { NodeSDK, type NodeSDKConfiguration } from '@opentelemetry/sdk-node';
import { sdkKey } from './tracing.js';

type Env = Record<string, string | undefined>;

const isSet = (env: Env, name: string) => (env[name] ?? '').trim() !== '';

/**
 * What the SDK is told beyond the OTEL_ variables it reads itself (endpoint, protocol, headers,
 * sampler, propagators, batch delays, resource attributes, OTEL_SDK_DISABLED).
 */
export function sdkOptions(env: Env, entry: string | undefined): Partial<NodeSDKConfiguration> {
  const options: Partial<NodeSDKConfiguration> = {};
  // One command starts every service (`services/<name>/src/main.ts`), so the folder names the
  // service unless OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES) does.
  if (!isSet(env, 'OTEL_SERVICE_NAME') && !/(^|,)\s*service\.name\s*=/.test(env.OTEL_RESOURCE_ATTRIBUTES ?? '')) {
    const service = /services[\\/]([^\\/]+)[\\/]src[\\/]main\.[cm]?[jt]s$/.exec(entry ?? '')?.[1];
    if (service) options.serviceName = service;
  }
  // sdk-node's default is OTLP to localhost:4318: on a machine without a collector that is an
  // export attempt every few seconds that goes nowhere. Spans are exported only when asked for.
  const tracesAsked = ['OTEL_TRACES_EXPORTER', 'OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT'].some((name) => isSet(env, name));
  if (!tracesAsked) options.spanProcessors = [];
  // Metrics are scraped from /metrics (Prometheus) and logs are written to stdout; the SDK
  // exports either only when told to.
  if (!isSet(env, 'OTEL_METRICS_EXPORTER')) options.metricReaders = [];
  if (!isSet(env, 'OTEL_LOGS_EXPORTER')) options.logRecordProcessors = [];
  return options;
}

/**
 * Starts the OpenTelemetry SDK once per process. Without a tracer provider (nothing to export)
 * the context manager and the W3C propagator still run, so a service that exports nothing
 * still passes on the trace context it receives.
 */
export function startTelemetry(env: Env = process.env, entry: string | undefined = process.argv[1]): void {
  const global = globalThis as { [sdkKey]?: NodeSDK };
  if (global[sdkKey]) return;
  const sdk = new NodeSDK(sdkOptions(env, entry));
  sdk.start();
  global[sdkKey] = sdk;
}
