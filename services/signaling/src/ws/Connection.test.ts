import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { ErrorCode, GatewayError, createLogger } from '@gateway/common';
import { JoinResponse, ServerMessage, type Notification } from '@gateway/proto/gateway/signaling/v1/signaling';
import type { ParticipantSession, SessionLink } from '../participant/ParticipantSession.js';
import { Connection, type SessionBroker } from './Connection.js';

const options = { maxFrameBytes: 64 * 1024, rateLimitPerSecond: 100, rateLimitBurst: 100, joinTimeoutMs: 10_000, pingIntervalMs: 60_000 };
const observer = { request: () => undefined, rateLimited: () => undefined };
const joined = (participantId: string): Notification['event'] => ({
  $case: 'participantJoined',
  value: { participantId, identity: participantId, name: '', role: 'end_user', tracks: [], joinedAtMs: 1, attributes: {}, state: '' } as never,
});

/**
 * A broker whose join hears the room's events while it works, as a real join does between
 * listing the room and answering: a participant who joins meanwhile is told of through the link.
 */
function brokerHearingDuringJoin(fail?: GatewayError): SessionBroker {
  const session = { tenant: 't', room: 'r', participantId: 'PA_me' } as ParticipantSession;
  const join = async (link: SessionLink) => {
    link.notify(joined('PA_other'));
    await new Promise((r) => setTimeout(r, 20));
    link.notify(joined('PA_third'));
    if (fail) throw fail;
    return { session, response: JoinResponse.fromPartial({ room: 'r' }) };
  };
  return { join, resume: join, handle: async () => ({ $case: 'ping', value: {} }) as never, detach: () => undefined };
}

/** A message as `response:<result>` or `notification:<participant the event is about>`. */
function describeMessage({ message }: ServerMessage): string {
  if (message?.$case === 'response') return `response:${message.value.result?.$case}`;
  const about = message?.$case === 'notification' && message.value.event?.$case === 'participantJoined' ? message.value.event.value.participantId : '?';
  return `${message?.$case}:${about}`;
}

const servers: WebSocketServer[] = [];
afterEach(() => {
  for (const server of servers.splice(0)) {
    for (const client of server.clients) client.terminate();
    server.close();
  }
});

/** A client connected to a Connection over a real socket; returns the messages it receives, in order. */
async function connect(broker: SessionBroker) {
  const server = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  servers.push(server);
  await once(server, 'listening');
  server.on('connection', (ws) => new Connection(ws, broker, options, observer, createLogger('connection-test', 'silent'), () => undefined));
  const client = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}`);
  const received: ServerMessage[] = [];
  client.on('message', (data) => received.push(ServerMessage.fromJSON(JSON.parse(String(data)))));
  await once(client, 'open');
  return { client, received };
}

describe('a connection joining', () => {
  it('sends the room events heard during the join after its answer, in the order heard', async () => {
    for (const method of ['join', 'resume'] as const) {
      const { client, received } = await connect(brokerHearingDuringJoin());
      const value = method === 'join' ? { token: 'x', protocolVersion: 1 } : { resumeToken: 'x', protocolVersion: 1 };
      client.send(JSON.stringify({ id: 1, [method]: value }));
      await expect.poll(() => received.length).toBe(3);
      const kinds = received.map(describeMessage);
      expect(kinds).toEqual([`response:${method}`, 'notification:PA_other', 'notification:PA_third']);
    }
  });

  it('drops them when the join fails: the client hears of no room it is not in', async () => {
    const { client, received } = await connect(brokerHearingDuringJoin(new GatewayError(ErrorCode.LIMIT_EXCEEDED, 'full')));
    client.send(JSON.stringify({ id: 1, join: { token: 'x', protocolVersion: 1 } }));
    await expect.poll(() => received.length).toBe(1);
    await new Promise((r) => setTimeout(r, 50));
    expect(received).toHaveLength(1);
    const only = received[0]!.message;
    expect(only?.$case === 'response' && only.value.result?.$case === 'error' && only.value.result.value.code).toBe(ErrorCode.LIMIT_EXCEEDED);
  });
});
