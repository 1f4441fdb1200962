import * as grpc from '@grpc/grpc-js';
import { ErrorCode, GatewayError } from './errors.js';
import { SpanKind, contextFromGrpcMetadata, grpcSpan, inSpan, injectIntoGrpcMetadata, markFailed } from './telemetry/tracing.js';

export { grpc };

/** GatewayError code -> gRPC status, applied once where a gRPC handler returns. */
const toStatus: Partial<Record<ErrorCode, grpc.status>> = {
  BAD_REQUEST: grpc.status.INVALID_ARGUMENT,
  MALFORMED_MESSAGE: grpc.status.INVALID_ARGUMENT,
  UNAUTHENTICATED: grpc.status.UNAUTHENTICATED,
  PERMISSION_DENIED: grpc.status.PERMISSION_DENIED,
  NOT_FOUND: grpc.status.NOT_FOUND,
  ALREADY_EXISTS: grpc.status.ALREADY_EXISTS,
  RATE_LIMITED: grpc.status.RESOURCE_EXHAUSTED,
  DRAINING: grpc.status.UNAVAILABLE,
  UNAVAILABLE: grpc.status.UNAVAILABLE,
  ROOM_UNAVAILABLE: grpc.status.UNAVAILABLE,
  TIMEOUT: grpc.status.DEADLINE_EXCEEDED,
  INVALID_STATE: grpc.status.FAILED_PRECONDITION,
  NO_CAPACITY: grpc.status.RESOURCE_EXHAUSTED,
  LIMIT_EXCEEDED: grpc.status.RESOURCE_EXHAUSTED,
};

const codeMetadataKey = 'gateway-error-code';

export function toServiceError(error: unknown): grpc.ServiceError {
  const gatewayError = GatewayError.from(error);
  const metadata = new grpc.Metadata();
  metadata.set(codeMetadataKey, gatewayError.code);
  return Object.assign(new Error(gatewayError.message), {
    code: toStatus[gatewayError.code] ?? grpc.status.INTERNAL,
    details: gatewayError.message,
    metadata,
  }) as grpc.ServiceError;
}

/** gRPC error received by a client -> GatewayError, keeping the server's code when it sent one. */
export function fromServiceError(error: unknown): GatewayError {
  if (error instanceof GatewayError) return error;
  const serviceError = error as Partial<grpc.ServiceError>;
  const sent = serviceError.metadata?.get(codeMetadataKey)[0];
  if (typeof sent === 'string' && GatewayError.isCode(sent)) {
    return new GatewayError(sent, serviceError.details ?? String(error), { cause: error });
  }
  const code =
    serviceError.code === grpc.status.UNAVAILABLE || serviceError.code === grpc.status.CANCELLED
      ? ErrorCode.UNAVAILABLE
      : serviceError.code === grpc.status.DEADLINE_EXCEEDED
        ? ErrorCode.TIMEOUT
        : ErrorCode.INTERNAL;
  return new GatewayError(code, serviceError.details ?? String(error), { cause: error });
}

type UnaryHandler<Req, Res> = (request: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>;

/**
 * Turns a map of async handlers into grpc-js unary handlers, mapping thrown errors to gRPC
 * status in one place. Each call runs in a SERVER span that continues the caller's trace (its
 * `traceparent` metadata, sent by `callUnary`).
 */
export function unaryHandlers<T extends Record<string, UnaryHandler<any, any>>>(
  handlers: T,
  onError?: (method: string, error: GatewayError) => void,
): grpc.UntypedServiceImplementation {
  const out: grpc.UntypedServiceImplementation = {};
  for (const [method, handler] of Object.entries(handlers)) {
    out[method] = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      const { name, attributes } = grpcSpan(call.getPath());
      void inSpan(name, { kind: SpanKind.SERVER, parent: contextFromGrpcMetadata(call.metadata), attributes }, (span) =>
        handler(call.request, call).then(
          (response) => {
            span.setAttribute('rpc.grpc.status_code', grpc.status.OK);
            callback(null, response);
          },
          (error: unknown) => {
            const gatewayError = GatewayError.from(error);
            onError?.(method, gatewayError);
            const serviceError = toServiceError(gatewayError);
            span.setAttribute('rpc.grpc.status_code', serviceError.code);
            markFailed(span, gatewayError);
            callback(serviceError);
          },
        ),
      );
    };
  }
  return out;
}

/** Starts a gRPC server on `host:port` (port 0 picks one) and returns it with the bound port. */
export async function startGrpcServer(
  register: (server: grpc.Server) => void,
  host: string,
  port: number,
  credentials: grpc.ServerCredentials = grpc.ServerCredentials.createInsecure(),
): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server({ 'grpc.keepalive_time_ms': 20_000, 'grpc.keepalive_permit_without_calls': 1 });
  register(server);
  const boundPort = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:${port}`, credentials, (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  return { server, port: boundPort };
}

export function stopGrpcServer(server: grpc.Server, graceMs = 5_000): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/**
 * Promisified unary call on a ts-proto grpc-js client, with a deadline, mapping failures to
 * GatewayError. Each call is a CLIENT span whose context goes to the server in the metadata.
 */
export function callUnary<Req, Res>(
  client: grpc.Client,
  method: (req: Req, metadata: grpc.Metadata, options: Partial<grpc.CallOptions>, cb: (err: grpc.ServiceError | null, res: Res) => void) => grpc.ClientUnaryCall,
  request: Req,
  timeoutMs = 10_000,
): Promise<Res> {
  // grpc-js puts the method's definition (with its path) on the client's method function.
  const { name, attributes } = grpcSpan((method as { path?: string }).path ?? `/unknown/${method.name}`);
  return inSpan(name, { kind: SpanKind.CLIENT, attributes }, (span) =>
    new Promise<Res>((resolve, reject) => {
      method.call(client, request, injectIntoGrpcMetadata(new grpc.Metadata()), { deadline: Date.now() + timeoutMs }, (error, response) => {
        span.setAttribute('rpc.grpc.status_code', error?.code ?? grpc.status.OK);
        if (error) reject(fromServiceError(error));
        else resolve(response);
      });
    }),
  );
}
