import type { Request, Response } from '@gateway/proto/gateway/signaling/v1/signaling';
import type { ParticipantSession } from '../participant/ParticipantSession.js';

/** One request of the `Request.method` oneof, as parsed from a frame. */
export type RequestMethod = NonNullable<Request['method']>;
/** The oneof's cases: one handler each. */
export type RequestCase = RequestMethod['$case'];
export type RequestOf<C extends RequestCase> = Extract<RequestMethod, { $case: C }>['value'];
/** A `Response.result`: the request's own case, or an error. */
export type ResponseResult = NonNullable<Response['result']>;
export type ResultOf<C extends RequestCase> = Extract<ResponseResult, { $case: C }>['value'];

/** Serves one request of a joined participant; throws a GatewayError (its code goes to the client). */
export type RequestHandler<C extends RequestCase> = (session: ParticipantSession, request: RequestOf<C>) => Promise<ResultOf<C>>;

/** The handlers of some cases: what each concern's module gives. */
export type Handlers<C extends RequestCase> = { readonly [K in C]: RequestHandler<K> };

/** A handler for every case: a case added to the proto without one does not compile. */
export type HandlerTable = Handlers<RequestCase>;
