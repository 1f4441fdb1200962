import { context, propagation } from '@opentelemetry/api';
import type { NodeSDKConfiguration } from '@opentelemetry/sdk-node';
import { sdkKey } from './tracing.js';

type Env = Record<string, string | undefined>;

const isSet = (env: Env, name: string) => (env[name] ?? '').trim() !== '';

/** Spans are exported only when one of these asks for it (see sdkOptions). */
const traceExportVariables = ['OTEL_TRACES_EXPORTER', 'OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT'];

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
  if (!traceExportVariables.some((name) => isSet(env, name))) options.spanProcessors = [];
  // Metrics are scraped from /metrics (Prometheus) and logs are written to stdout; the SDK
  // exports either only when told to.
  if (!isSet(env, 'OTEL_METRICS_EXPORTER')) options.metricReaders = [];
  if (!isSet(env, 'OTEL_LOGS_EXPORTER')) options.logRecordProcessors = [];
  return options;
}

/**
 * Whether the environment asks for more than the SDK does with nothing to export: an exporter of
 * spans, metrics or logs, other propagators, the SDK's own logging, or no SDK at all. Without
 * any of these the SDK (sdk-node 0.223) registers no tracer, meter or logger provider, only the
 * AsyncLocalStorage context manager and the W3C trace context and baggage propagators.
 */
export function sdkNeeded(env: Env): boolean {
  return [...traceExportVariables, 'OTEL_METRICS_EXPORTER', 'OTEL_LOGS_EXPORTER', 'OTEL_PROPAGATORS', 'OTEL_LOG_LEVEL', 'OTEL_SDK_DISABLED'].some((name) => isSet(env, name));
}

/**
 * Starts OpenTelemetry once per process. Without a tracer provider (nothing to export) the
 * context manager and the W3C propagators still run, so a service that exports nothing still
 * passes on the trace context it receives. Those two are all that is registered then, without
 * loading the SDK: it costs 0.1 to 0.2 s of CPU at every start of a service (tests,
 * `make up`) and would register nothing more.
 */
export async function startTelemetry(env: Env = process.env, entry: string | undefined = process.argv[1]): Promise<void> {
  const global = globalThis as { [sdkKey]?: { shutdown(): Promise<void> } };
  if (global[sdkKey]) return;
  if (!sdkNeeded(env)) {
    const [{ AsyncLocalStorageContextManager }, { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator }] = await Promise.all([
      import('@opentelemetry/context-async-hooks'),
      import('@opentelemetry/core'),
    ]);
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    propagation.setGlobalPropagator(new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }));
    // Nothing buffered to flush at shutdown.
    global[sdkKey] = { shutdown: async () => undefined };
    return;
  }
  const { NodeSDK } = await import('@opentelemetry/sdk-node');
  const sdk = new NodeSDK(sdkOptions(env, entry));
  sdk.start();
  global[sdkKey] = sdk;
}
