import * as grpc from '@grpc/grpc-js';
import { newReference } from '../runtime/clientErrors.js';
import { ErrorCode, GatewayError } from '../errors.js';
import { grpcPeerIdentity, type GrpcService } from './tls.js';
import type { Logger } from '../runtime/logger.js';
import { SpanKind, contextFromGrpcMetadata, grpcSpan, inSpan, injectIntoGrpcMetadata, markFailed } from '../telemetry/tracing.js';

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

/**
 * What a client says of a failed call whose server sent no Gateway code: a transport failure
 * ("No connection established. Last error: connect ECONNREFUSED 10.0.0.5:50051"), a deadline, a
 * refused handshake. The transport's own text, with internal addresses, stays in the cause.
 */
const transportMessages: Partial<Record<ErrorCode, string>> = {
  UNAVAILABLE: 'the service could not be reached',
  TIMEOUT: 'the service did not answer in time',
  PERMISSION_DENIED: 'the service refused this caller',
  BAD_REQUEST: 'the service could not read the request',
  INTERNAL: 'the call to the service failed',
};

/** gRPC error received by a client -> GatewayError, keeping the server's code and message when it sent one. */
export function fromServiceError(error: unknown): GatewayError {
  if (error instanceof GatewayError) return error;
  const serviceError = error as Partial<grpc.ServiceError>;
  const sent = serviceError.metadata?.get(codeMetadataKey)[0];
  if (typeof sent === 'string' && GatewayError.isCode(sent)) {
    return new GatewayError(sent, serviceError.details ?? 'the service refused the call', { cause: error });
  }
  const code =
    serviceError.code === grpc.status.UNAVAILABLE || serviceError.code === grpc.status.CANCELLED
      ? ErrorCode.UNAVAILABLE
      : serviceError.code === grpc.status.DEADLINE_EXCEEDED
        ? ErrorCode.TIMEOUT
        : serviceError.code === grpc.status.PERMISSION_DENIED || serviceError.code === grpc.status.UNAUTHENTICATED
          ? ErrorCode.PERMISSION_DENIED
          : serviceError.code === grpc.status.INVALID_ARGUMENT
            ? ErrorCode.BAD_REQUEST
            : ErrorCode.INTERNAL;
  return new GatewayError(code, transportMessages[code]!, { cause: error });
}

/** What a request that does not decode (truncated, wrong wire types, nested past the decoder's stack) becomes. */
const undecodable = Symbol('undecodable request');

/**
 * The service definition with each request decoder made total: bytes that do not decode reach
 * the handlers as a marker that `unaryHandlers` answers with MALFORMED_MESSAGE
 * (INVALID_ARGUMENT), instead of grpc-js's INTERNAL.
 */
export function withCheckedDecoding<D extends grpc.ServiceDefinition>(definition: D): D {
  const checked: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(definition as grpc.ServiceDefinition)) {
    checked[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return method.requestDeserialize(bytes);
        } catch {
          return { [undecodable]: true };
        }
      },
    };
  }
  return checked as D;
}

type UnaryHandler<Req, Res> = (request: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>;

/** Which services may call each method: every method has an entry, and one without is refused. */
export type GrpcAccess<T> = { readonly [K in keyof T]: readonly GrpcService[] };

export interface UnaryHandlersOptions<T> {
  /** Method -> the services whose certificates may call it. */
  access: GrpcAccess<T>;
  /**
   * Whether callers must prove who they are (the server has mutual TLS). Without TLS (one
   * machine, plaintext) there is no identity to check and every method is open.
   */
  requireIdentity: boolean;
  /** Where refused callers and unexpected failures are logged (with the reference their caller got). */
  log: Logger;
  onError?: (method: string, error: GatewayError) => void;
}

/** Codes whose message may carry a library's words or an internal address: the caller gets a reference instead. */
const withheldCodes = new Set<ErrorCode>([ErrorCode.INTERNAL, ErrorCode.CONFIG_INVALID]);

/**
 * Turns a map of async handlers into grpc-js unary handlers, in one place for every service:
 * the caller's identity is checked against the method's entry in `access` before the request
 * is looked at (a caller not listed, or a method without an entry, gets PERMISSION_DENIED and
 * nothing happens), thrown errors are mapped to gRPC status, and unexpected failures reach the
 * caller as "internal error" with a reference while the details go to the log. Each call runs
 * in a SERVER span that continues the caller's trace (its `traceparent` metadata, sent by
 * `callUnary`).
 */
// biome-ignore lint/suspicious/noExplicitAny: the constraint admits handlers of any request and response types; each is checked where it is written
export function unaryHandlers<T extends Record<string, UnaryHandler<any, any>>>(handlers: T, options: UnaryHandlersOptions<T>): grpc.UntypedServiceImplementation {
  const out: grpc.UntypedServiceImplementation = {};
  const access = options.access as Partial<Record<string, readonly GrpcService[]>>;
  for (const [method, handler] of Object.entries(handlers)) {
    out[method] = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      const { name, attributes } = grpcSpan(call.getPath());
      void inSpan(name, { kind: SpanKind.SERVER, parent: contextFromGrpcMetadata(call.metadata), attributes }, (span) => {
        const run = async () => {
          if (options.requireIdentity) {
            const caller = grpcPeerIdentity(call.getAuthContext()?.sslPeerCertificate);
            if (!caller || !Object.hasOwn(access, method) || !access[method]!.includes(caller)) {
              options.log.warn({ method, caller: caller ?? 'unknown' }, 'gRPC caller refused');
              throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'this caller may not call this method');
            }
          }
          if (typeof call.request === 'object' && call.request !== null && undecodable in call.request) {
            throw new GatewayError(ErrorCode.MALFORMED_MESSAGE, 'the request does not decode');
          }
          return handler(call.request, call);
        };
        return run().then(
          (response) => {
            span.setAttribute('rpc.grpc.status_code', grpc.status.OK);
            callback(null, response);
          },
          (error: unknown) => {
            let gatewayError = GatewayError.from(error);
            options.onError?.(method, gatewayError);
            if (withheldCodes.has(gatewayError.code)) {
              const reference = newReference();
              options.log.error({ method, err: error, reference }, 'gRPC handler failed');
              gatewayError = new GatewayError(ErrorCode.INTERNAL, `internal error (reference ${reference})`, { cause: error });
            }
            const serviceError = toServiceError(gatewayError);
            span.setAttribute('rpc.grpc.status_code', serviceError.code);
            markFailed(span, gatewayError);
            callback(serviceError);
          },
        );
      });
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
  options: { maxReceiveBytes?: number } = {},
): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server({
    'grpc.keepalive_time_ms': 20_000,
    'grpc.keepalive_permit_without_calls': 1,
    // Requests larger than any real one are refused before they are decoded.
    ...(options.maxReceiveBytes ? { 'grpc.max_receive_message_length': options.maxReceiveBytes } : {}),
  });
  register(server);
  const boundPort = await new Promise<number>((resolve, reject) => server.bindAsync(`${host}:${port}`, credentials, (error, bound) => (error ? reject(error) : resolve(bound))));
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
  return inSpan(
    name,
    { kind: SpanKind.CLIENT, attributes },
    (span) =>
      new Promise<Res>((resolve, reject) => {
        method.call(client, request, injectIntoGrpcMetadata(new grpc.Metadata()), { deadline: Date.now() + timeoutMs }, (error, response) => {
          span.setAttribute('rpc.grpc.status_code', error?.code ?? grpc.status.OK);
          if (error) reject(fromServiceError(error));
          else resolve(response);
        });
      }),
  );
}
