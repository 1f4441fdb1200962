import http from 'node:http';
import { gunzipSync } from 'node:zlib';
import type { AddressInfo } from 'node:net';

/** One span as a service exported it, with its resource's service name and instance. */
export interface CollectedSpan {
  traceId: string;
  spanId: string;
  /** Empty for a root span. */
  parentSpanId: string;
  name: string;
  /** OTLP SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number;
  service: string;
  instance: string | undefined;
  attributes: Record<string, unknown>;
  links: Array<{ traceId: string; spanId: string }>;
  statusCode: number;
}

export const SpanKinds = { internal: 1, server: 2, client: 3, producer: 4, consumer: 5 } as const;

interface OtlpValue {
  stringValue?: string;
  intValue?: number | string;
  doubleValue?: number;
  boolValue?: boolean;
}

const valueOf = (v: OtlpValue): unknown => v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : undefined) ?? v.doubleValue ?? v.boolValue;

const attributesOf = (list: Array<{ key: string; value: OtlpValue }> | undefined) => Object.fromEntries((list ?? []).map((a) => [a.key, valueOf(a.value)]));

/**
 * An OTLP/HTTP trace receiver kept in memory: services started with `env` export their spans
 * here as JSON (`OTEL_EXPORTER_OTLP_PROTOCOL=http/json`), configured only by the standard OTEL_
 * variables, exactly as they would point at a real collector.
 */
export class OtlpCollector {
  readonly spans: CollectedSpan[] = [];

  private constructor(private readonly server: http.Server) {}

  static async start(): Promise<OtlpCollector> {
    const server = http.createServer();
    const collector = new OtlpCollector(server);
    server.on('request', (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        if (req.method !== 'POST' || req.url !== '/v1/traces') {
          res.writeHead(404).end();
          return;
        }
        try {
          let body = Buffer.concat(chunks);
          if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
          collector.receive(JSON.parse(body.toString('utf8')));
          res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
        } catch {
          res.writeHead(400).end();
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return collector;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** The environment of a service that exports here, batches sent within 100 ms. */
  env(extra: Record<string, string> = {}): Record<string, string> {
    return { OTEL_EXPORTER_OTLP_ENDPOINT: this.endpoint, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_BSP_SCHEDULE_DELAY: '100', ...extra };
  }

  private receive(request: { resourceSpans?: Array<Record<string, any>> }): void {
    for (const resourceSpans of request.resourceSpans ?? []) {
      const resource = attributesOf(resourceSpans.resource?.attributes);
      for (const scopeSpans of resourceSpans.scopeSpans ?? []) {
        for (const span of scopeSpans.spans ?? []) {
          this.spans.push({
            traceId: span.traceId,
            spanId: span.spanId,
            parentSpanId: span.parentSpanId ?? '',
            name: span.name,
            kind: span.kind,
            service: String(resource['service.name']),
            instance: resource['service.instance.id'] as string | undefined,
            attributes: attributesOf(span.attributes),
            links: (span.links ?? []).map((l: { traceId: string; spanId: string }) => ({ traceId: l.traceId, spanId: l.spanId })),
            statusCode: span.status?.code ?? 0,
          });
        }
      }
    }
  }

  /** The spans of one trace. */
  trace(traceId: string): CollectedSpan[] {
    return this.spans.filter((s) => s.traceId === traceId);
  }

  /** The span's parent, its parent's parent, ... as far as they were collected. */
  ancestors(span: CollectedSpan): CollectedSpan[] {
    const chain: CollectedSpan[] = [];
    for (let current = span; current.parentSpanId; ) {
      const parent = this.spans.find((s) => s.traceId === current.traceId && s.spanId === current.parentSpanId);
      if (!parent) break;
      chain.push(parent);
      current = parent;
    }
    return chain;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
