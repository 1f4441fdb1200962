import { contextFromNatsHeaders, ErrorCode, GatewayError, natsHeadersWithTrace, subjects, type NatsConnection } from '@gateway/common';
import { Command, Reply } from '@gateway/proto/gateway/routing/v1/routing';

/** A trace context routing answered with. */
type TraceContext = ReturnType<typeof contextFromNatsHeaders>;

/** How long a command waits for a tenant's owner: a lease changing hands takes up to its age limit. */
const OWNER_WAIT_MS = 12_000;
const ANSWER_TIMEOUT_MS = 5_000;

/**
 * Commands to a tenant's routing owner (docs/routing.md), over NATS request/reply: only the
 * replica holding the tenant's lease listens, so no lookup is needed; no responders means a lease
 * is changing hands, and the command is sent again shortly. An answer that does not decode is a
 * failure like a missing one.
 */
export class RoutingClient {
  constructor(private readonly nc: NatsConnection) {}

  async send(tenant: string, command: NonNullable<Command['command']>): Promise<NonNullable<Reply['result']>> {
    return (await this.request(tenant, command)).result;
  }

  /**
   * Sends a command with the active trace context, and gives the answer with the trace context
   * routing answered with (an accept's: the contact's trace, where the join token is minted).
   */
  async request(tenant: string, command: NonNullable<Command['command']>): Promise<{ result: NonNullable<Reply['result']>; trace: TraceContext }> {
    const data = Command.encode({ tenant, command }).finish();
    const headers = natsHeadersWithTrace();
    const deadline = Date.now() + OWNER_WAIT_MS;
    for (let attempt = 0; ; attempt++) {
      let answer: Uint8Array;
      let trace: TraceContext;
      try {
        const message = await this.nc.request(subjects.routingCommand(tenant), data, { timeout: ANSWER_TIMEOUT_MS, ...(headers ? { headers } : {}) });
        answer = message.data;
        trace = contextFromNatsHeaders(message.headers);
      } catch (error) {
        // A RequestError whose cause is NoResponders (nats.js v3): nobody holds the tenant right now.
        const noOwner = (error as Error)?.cause instanceof Error ? ((error as Error).cause as Error).name === 'NoResponders' : /no responders/i.test(String((error as Error)?.message));
        if (noOwner && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, Math.min(1_000, 100 * 2 ** attempt)));
          continue;
        }
        throw new GatewayError(ErrorCode.UNAVAILABLE, 'routing did not answer; try again', { cause: error });
      }
      let reply: Reply;
      try {
        reply = Reply.decode(answer);
      } catch (error) {
        throw new GatewayError(ErrorCode.UNAVAILABLE, 'routing answered something unreadable', { cause: error });
      }
      const result = reply.result;
      if (!result) throw new GatewayError(ErrorCode.UNAVAILABLE, 'routing answered nothing');
      if (result.$case === 'error') throw new GatewayError(knownCode(result.value.code), result.value.message.slice(0, 500));
      return { result, trace };
    }
  }
}

function knownCode(code: string): ErrorCode {
  return (Object.values(ErrorCode) as string[]).includes(code) ? (code as ErrorCode) : ErrorCode.INTERNAL;
}
