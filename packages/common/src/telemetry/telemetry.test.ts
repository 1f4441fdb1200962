import { afterEach, describe, expect, it } from 'vitest';
import { ROOT_CONTEXT, context, propagation, trace, TraceFlags } from '@opentelemetry/api';
import { NodeSDK, core } from '@opentelemetry/sdk-node';
import * as grpc from '@grpc/grpc-js';
import { sdkNeeded, sdkOptions, startTelemetry } from './sdk.js';
import {
  contextFromGrpcMetadata,
  contextFromNatsHeaders,
  contextFromTraceparent,
  grpcSpan,
  injectIntoGrpcMetadata,
  linksFromNatsHeaders,
  natsHeadersWithTrace,
  sdkKey,
  traceparentOf,
} from './tracing.js';

const entry = '/srv/gateway/services/crm-sync/src/main.ts';

describe('sdkOptions', () => {
  it('exports nothing and names the service after its folder when no OTEL_ variable is set', () => {
    expect(sdkOptions({}, entry)).toEqual({ serviceName: 'crm-sync', spanProcessors: [], metricReaders: [], logRecordProcessors: [] });
  });

  it('leaves the exporter to the SDK once an endpoint or exporter is configured', () => {
    for (const name of ['OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', 'OTEL_TRACES_EXPORTER']) {
      expect(sdkOptions({ [name]: 'http://collector:4318' }, entry)).not.toHaveProperty('spanProcessors');
    }
    // An empty variable is an unset one.
    expect(sdkOptions({ OTEL_EXPORTER_OTLP_ENDPOINT: ' ' }, entry).spanProcessors).toEqual([]);
    expect(sdkOptions({ OTEL_METRICS_EXPORTER: 'otlp', OTEL_LOGS_EXPORTER: 'otlp' }, entry)).toEqual({ serviceName: 'crm-sync', spanProcessors: [] });
  });

  it('lets OTEL_SERVICE_NAME or service.name in OTEL_RESOURCE_ATTRIBUTES name the service', () => {
    expect(sdkOptions({ OTEL_SERVICE_NAME: 'x' }, entry)).not.toHaveProperty('serviceName');
    expect(sdkOptions({ OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=prod,service.name=y' }, entry)).not.toHaveProperty('serviceName');
    expect(sdkOptions({}, '/usr/bin/some-tool')).not.toHaveProperty('serviceName');
  });
});

describe('startTelemetry without anything to export', () => {
  afterEach(() => {
    context.disable();
    propagation.disable();
    trace.disable();
    delete (globalThis as { [sdkKey]?: unknown })[sdkKey];
  });

  /** What the services rely on: headers injected for a traced context, the active context across an await, and spans. */
  async function observed() {
    const spanContext = { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: TraceFlags.SAMPLED };
    const parent = propagation.setBaggage(trace.setSpanContext(ROOT_CONTEXT, spanContext), propagation.createBaggage({ tenant: { value: 'demo' } }));
    const carrier: Record<string, string> = {};
    propagation.inject(parent, carrier);
    const afterAwait = await context.with(parent, async () => {
      await new Promise((resolve) => setTimeout(resolve, 1));
      return trace.getSpanContext(context.active())?.spanId;
    });
    const span = trace.getTracer('gateway').startSpan('x', {}, parent);
    return { carrier, afterAwait, recording: span.isRecording(), child: span.spanContext().spanId, fields: propagation.fields().sort() };
  }

  it('needs the SDK only for an exporter, other propagators, its own logging or turning it off', () => {
    expect(sdkNeeded({})).toBe(false);
    expect(sdkNeeded({ OTEL_EXPORTER_OTLP_ENDPOINT: ' ', OTEL_SERVICE_NAME: 'x', OTEL_RESOURCE_ATTRIBUTES: 'a=b' })).toBe(false);
    for (const name of [
      'OTEL_TRACES_EXPORTER',
      'OTEL_EXPORTER_OTLP_ENDPOINT',
      'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT',
      'OTEL_METRICS_EXPORTER',
      'OTEL_LOGS_EXPORTER',
      'OTEL_PROPAGATORS',
      'OTEL_LOG_LEVEL',
      'OTEL_SDK_DISABLED',
    ]) {
      expect(sdkNeeded({ [name]: 'x' }), name).toBe(true);
    }
  });

  it('registers what the SDK registers then, without loading it: trace context and baggage carried, context kept across awaits, no spans recorded', async () => {
    await startTelemetry({}, entry);
    const light = await observed();
    expect(light).toMatchObject({ afterAwait: '00f067aa0ba902b7', recording: false, child: '00f067aa0ba902b7', fields: ['baggage', 'traceparent', 'tracestate'] });
    expect(light.carrier).toEqual({ traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', baggage: 'tenant=demo' });
    // A second start changes nothing.
    await startTelemetry({}, entry);
    expect(await observed()).toEqual(light);

    context.disable();
    propagation.disable();
    trace.disable();
    const sdk = new NodeSDK(sdkOptions({}, entry));
    sdk.start();
    try {
      expect(await observed()).toEqual(light);
    } finally {
      await sdk.shutdown();
    }
  });
});

describe('trace context in NATS headers and gRPC metadata', () => {
  const spanContext = { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: TraceFlags.SAMPLED };
  const traced = trace.setSpanContext(ROOT_CONTEXT, spanContext);
  afterEach(() => propagation.disable());

  it('keeps a traceparent with a record and continues its trace from it', () => {
    propagation.setGlobalPropagator(new core.W3CTraceContextPropagator());
    const kept = traceparentOf(traced);
    expect(kept).toBe('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
    expect(trace.getSpanContext(contextFromTraceparent(kept)!)).toMatchObject({ ...spanContext, isRemote: true });
    // Nothing traced, nothing kept; a kept value that names no trace continues none.
    expect(traceparentOf(ROOT_CONTEXT)).toBeUndefined();
    expect(contextFromTraceparent(undefined)).toBeUndefined();
    expect(contextFromTraceparent('00-00000000000000000000000000000000-00f067aa0ba902b7-01')).toBeUndefined();
  });

  it('carries traceparent through NATS headers', () => {
    propagation.setGlobalPropagator(new core.W3CTraceContextPropagator());
    const headers = natsHeadersWithTrace(traced)!;
    expect(headers.get('traceparent')).toBe('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
    expect(trace.getSpanContext(contextFromNatsHeaders(headers)!)).toMatchObject({ ...spanContext, isRemote: true });
    expect(linksFromNatsHeaders(headers)).toEqual([{ context: expect.objectContaining(spanContext) }]);
  });

  it('sends no headers at all when nothing is traced', () => {
    propagation.setGlobalPropagator(new core.W3CTraceContextPropagator());
    expect(natsHeadersWithTrace(ROOT_CONTEXT)).toBeUndefined();
    expect(contextFromNatsHeaders(undefined)).toBeUndefined();
    expect(linksFromNatsHeaders(undefined)).toEqual([]);
  });

  it('does nothing before the SDK is started (no propagator)', () => {
    expect(natsHeadersWithTrace(traced)).toBeUndefined();
  });

  it('carries traceparent through gRPC metadata', () => {
    propagation.setGlobalPropagator(new core.W3CTraceContextPropagator());
    const metadata = injectIntoGrpcMetadata(new grpc.Metadata(), traced);
    expect(metadata.get('traceparent')).toEqual(['00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01']);
    expect(trace.getSpanContext(contextFromGrpcMetadata(metadata))).toMatchObject(spanContext);
    expect(trace.getSpanContext(contextFromGrpcMetadata(new grpc.Metadata()))).toBeUndefined();
  });

  it('names gRPC spans {service}/{method}', () => {
    expect(grpcSpan('/gateway.sfu.v1.Sfu/OpenRoom')).toEqual({
      name: 'gateway.sfu.v1.Sfu/OpenRoom',
      attributes: { 'rpc.system': 'grpc', 'rpc.service': 'gateway.sfu.v1.Sfu', 'rpc.method': 'OpenRoom' },
    });
  });
});
