import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  context,
  isSpanContextValid,
  propagation,
  trace,
  type Attributes,
  type Context,
  type Link,
  type Span,
  type TextMapGetter,
  type TextMapSetter,
} from '@opentelemetry/api';
import type { Metadata } from '@grpc/grpc-js';
import { headers as natsHeaders, type MsgHdrs } from '@nats-io/transport-node';
import { GatewayError } from '../errors.js';

/**
 * Tracing across services: spans around the requests that cross a process, and W3C trace
 * context (`traceparent`, `tracestate`) carried in gRPC metadata and NATS headers. Everything here
 * goes through @opentelemetry/api, which does nothing until the SDK is started
 * (`telemetry/register.ts`, loaded with `node --import`): unit tests and tools pay nothing.
 *
 * Span attributes name tenants, rooms, participants and deliveries by id, never a person
 * (no identity, name, phone number, message text, error message).
 */
export { SpanKind, type Span };

/** Where the SDK started by register.ts is kept, so that shutdown can flush it. */
export const sdkKey = Symbol.for('gateway.telemetry.sdk');

export const tracer = trace.getTracer('gateway');

export interface SpanOptions {
  kind?: SpanKind;
  attributes?: Attributes;
  links?: Link[];
  /** Start a new trace, whatever is active. */
  root?: boolean;
  /** The parent; by default the active context. */
  parent?: Context;
  /** When it began, in ms since the epoch (for work whose start is known only later); by default now. */
  startTime?: number;
}

/** Marks a span as failed with the error's code only: messages may quote what a user sent. */
export function markFailed(span: Span, error: unknown): void {
  const code = GatewayError.from(error).code;
  span.setAttribute('error.type', code);
  span.setStatus({ code: SpanStatusCode.ERROR, message: code });
}

/**
 * Runs `fn` in a new active span that ends when `fn` returns (or its promise settles). A throw or
 * rejection marks the span failed and is passed on. Synchronous functions stay synchronous.
 */
export function inSpan<T>(name: string, options: SpanOptions, fn: (span: Span) => T): T {
  const { parent = context.active(), ...spanOptions } = options;
  return tracer.startActiveSpan(name, spanOptions, parent, (span) => {
    let result: T;
    try {
      result = fn(span);
    } catch (error) {
      markFailed(span, error);
      span.end();
      throw error;
    }
    if (result instanceof Promise) {
      return result.then(
        (value) => {
          span.end();
          return value;
        },
        (error: unknown) => {
          markFailed(span, error);
          span.end();
          throw error;
        },
      ) as T;
    }
    span.end();
    return result;
  });
}

/**
 * Records a span for something already over (an offer, from when it was made to its outcome),
 * under `parent`; nothing when there is no parent to continue.
 */
export function recordSpan(name: string, parent: Context | undefined, options: { startTime: number; endTime: number; attributes: Attributes }): void {
  if (!parent) return;
  tracer.startSpan(name, { startTime: options.startTime, attributes: options.attributes }, parent).end(Math.max(options.startTime, options.endTime));
}

// ---- a trace kept with a record ----

/**
 * The W3C `traceparent` of a context (the active one by default), to keep with a record that
 * outlives the process (a contact handed to another routing replica goes on in the same trace);
 * undefined when nothing is traced.
 */
export function traceparentOf(ctx: Context = context.active()): string | undefined {
  const carrier: Record<string, string> = {};
  propagation.inject(ctx, carrier, recordSetter);
  return carrier.traceparent;
}

/** The context a kept `traceparent` continues; undefined when it names no trace. */
export function contextFromTraceparent(traceparent: string | undefined): Context | undefined {
  if (!traceparent) return undefined;
  const extracted = propagation.extract(ROOT_CONTEXT, { traceparent }, recordGetter);
  return trace.getSpanContext(extracted) ? extracted : undefined;
}

/** The trace ids of the active span, for log lines; empty when nothing is traced. */
export function traceFields(): { trace_id?: string; span_id?: string } {
  const spanContext = trace.getActiveSpan()?.spanContext();
  if (!spanContext || !isSpanContextValid(spanContext)) return {};
  return { trace_id: spanContext.traceId, span_id: spanContext.spanId };
}

// ---- NATS ----

const recordSetter: TextMapSetter<Record<string, string>> = { set: (carrier, key, value) => (carrier[key] = value) };

const recordGetter: TextMapGetter<Record<string, string>> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => carrier[key],
};

const natsGetter: TextMapGetter<MsgHdrs> = {
  keys: (carrier) => carrier.keys(),
  get: (carrier, key) => (carrier.has(key) ? carrier.get(key) : undefined),
};

/**
 * Headers carrying the active trace context, for `publish(subject, data, { headers })`; undefined
 * (no headers at all) when nothing is traced, so untraced messages cost nothing.
 */
export function natsHeadersWithTrace(ctx: Context = context.active()): MsgHdrs | undefined {
  const carrier: Record<string, string> = {};
  propagation.inject(ctx, carrier, recordSetter);
  const keys = Object.keys(carrier);
  if (keys.length === 0) return undefined;
  const headers = natsHeaders();
  for (const key of keys) headers.set(key, carrier[key]!);
  return headers;
}

/** The trace context a message carries, or undefined when it carries none. */
export function contextFromNatsHeaders(headers: MsgHdrs | undefined): Context | undefined {
  if (!headers?.has('traceparent')) return undefined;
  const extracted = propagation.extract(ROOT_CONTEXT, headers, natsGetter);
  return trace.getSpanContext(extracted) ? extracted : undefined;
}

/**
 * Handles a message in a CONSUMER span, child of the context the message carries. A message that
 * carries none (periodic events such as the active speaker) is handled without a span: a fan-out
 * of untraced events must not start a trace per message.
 */
export function inMessageSpan<T>(name: string, headers: MsgHdrs | undefined, attributes: Attributes, fn: () => T): T {
  const parent = contextFromNatsHeaders(headers);
  if (!parent) return fn();
  return inSpan(name, { kind: SpanKind.CONSUMER, parent, attributes: { 'messaging.system': 'nats', 'messaging.operation.type': 'process', ...attributes } }, fn);
}

/** Attributes of the span of a room event (`gateway.<tenant>.room.<room>.events`) being handled. */
export function roomEventAttributes(tenant: string, room: string, kind: string): Attributes {
  return { 'messaging.destination.template': 'gateway.{tenant}.room.{room}.events', 'gateway.tenant': tenant, 'gateway.room': room, 'gateway.room_event': kind };
}

/** A link to the context a message carries (for work that runs apart from the sender's trace). */
export function linksFromNatsHeaders(headers: MsgHdrs | undefined): Link[] {
  const spanContext = trace.getSpanContext(contextFromNatsHeaders(headers) ?? ROOT_CONTEXT);
  return spanContext ? [{ context: spanContext }] : [];
}

// ---- gRPC ----

const metadataSetter: TextMapSetter<Metadata> = { set: (carrier, key, value) => carrier.set(key, value) };

const metadataGetter: TextMapGetter<Metadata> = {
  keys: (carrier) => Object.keys(carrier.getMap()),
  get: (carrier, key) => {
    const values = carrier.get(key);
    return values.length > 0 ? String(values[0]) : undefined;
  },
};

/** Adds the active trace context to outgoing call metadata. */
export function injectIntoGrpcMetadata(metadata: Metadata, ctx: Context = context.active()): Metadata {
  propagation.inject(ctx, metadata, metadataSetter);
  return metadata;
}

/** The caller's trace context from incoming call metadata (a root context when it sent none). */
export function contextFromGrpcMetadata(metadata: Metadata | undefined): Context {
  return metadata ? propagation.extract(ROOT_CONTEXT, metadata, metadataGetter) : ROOT_CONTEXT;
}

/** `/gateway.sfu.v1.Sfu/OpenRoom` -> span name `gateway.sfu.v1.Sfu/OpenRoom` and the rpc.* attributes. */
export function grpcSpan(path: string): { name: string; attributes: Attributes } {
  const [service = 'unknown', method = 'unknown'] = path.replace(/^\//, '').split('/');
  return { name: `${service}/${method}`, attributes: { 'rpc.system': 'grpc', 'rpc.service': service, 'rpc.method': method } };
}

// ---- shutdown ----

/** Exports what is still buffered; bounded, so a collector that is down cannot hold up an exit. */
export async function shutdownTelemetry(timeoutMs = 2_000): Promise<void> {
  const sdk = (globalThis as { [sdkKey]?: { shutdown(): Promise<void> } })[sdkKey];
  if (!sdk) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([sdk.shutdown().catch(() => undefined), new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
  clearTimeout(timer);
}
