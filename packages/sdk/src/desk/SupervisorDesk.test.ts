import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { WebSocketConstructor } from '../signaling/Socket.js';
import { FakeDesk } from '../testing/FakeDesk.js';
import { SupervisorDesk } from './SupervisorDesk.js';
import type { QueueView } from './types.js';

const WS = WebSocket as unknown as WebSocketConstructor;
const view = {
  atMs: 9_000,
  queues: [{ queueId: 'billing', name: 'Billing', waiting: 2, longestWaitSeconds: 40, serviceLevel: 0.9, serviceLevelSeconds: 60 }],
  agents: [{ agentId: 'AG_1', name: 'Grace', status: 'AGENT_STATUS_AFTER_CONTACT_WORK', contactIds: ['CT_1'], rooms: ['support-CT_1'] }],
};

describe('SupervisorDesk', () => {
  let server: FakeDesk | undefined;
  let desk: SupervisorDesk | undefined;
  afterEach(async () => {
    desk?.close();
    await server?.stop();
    server = desk = undefined;
  });

  it('reads the queue view, and hears of changes', async () => {
    server = await FakeDesk.start();
    server.role = 'supervisor';
    server.answer = (method) => (method === 'queueView' ? { queues: view } : undefined);
    desk = await SupervisorDesk.create({ WebSocket: WS, url: server.url, token: 'sup-jwt' });
    const read = await desk.queueView();
    expect(read.queues[0]).toEqual({
      queueId: 'billing',
      name: 'Billing',
      waiting: 2,
      longestWaitSeconds: 40,
      offered: 0,
      connected: 0,
      serviceLevel: 0.9,
      abandonRate: 0,
      answeredToday: 0,
      abandonedToday: 0,
      estimatedWaitSeconds: 0,
      serviceLevelSeconds: 60,
    });
    expect(read.agents).toEqual([{ agentId: 'AG_1', name: 'Grace', status: 'after_contact_work', reason: '', contactIds: ['CT_1'], rooms: ['support-CT_1'] }]);
    const changed = new Promise<QueueView>((resolve) => desk!.on('queues', resolve));
    server.notify({ queues: { ...view, atMs: 10_000 } });
    expect((await changed).atMs).toBe(10_000);
    expect(desk.view?.atMs).toBe(10_000);
  });
});
