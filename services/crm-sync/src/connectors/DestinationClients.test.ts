import { describe, expect, it } from 'vitest';
import { createLogger } from '@gateway/common';
import { waitFor } from '@gateway/testing';
import type { Destination } from '../destinations/types.js';
import { DestinationClients } from './DestinationClients.js';

/** A destination that counts what is done to it. */
class CountingDestination implements Destination {
  delivered = 0;
  closed = 0;
  async test(): Promise<void> {}
  async deliver(): Promise<void> {
    this.delivered++;
  }
  async close(): Promise<void> {
    this.closed++;
  }
}

const log = createLogger('crm-sync-test', 'silent');

function clientsWithFactory(limits = { idleMs: 60_000, maxAgeMs: 600_000 }) {
  const made: CountingDestination[] = [];
  const clients = new DestinationClients(limits, log);
  const create = async () => {
    const destination = new CountingDestination();
    made.push(destination);
    return destination;
  };
  const deliver = (key: string, revision: string) => clients.use(key, revision, create, (d) => d.deliver({} as never));
  return { clients, made, create, deliver };
}

describe('DestinationClients', () => {
  it('keeps one client per connector and revision, and closes the old one when the record changes', async () => {
    const { clients, made, deliver } = clientsWithFactory();
    await deliver('demo.crm', 'r1');
    await deliver('demo.crm', 'r1');
    await deliver('globex.crm', 'r1');
    expect(made.length).toBe(2);
    expect(made[0]!.delivered).toBe(2);
    await deliver('demo.crm', 'r2');
    expect(made.length).toBe(3);
    await new Promise((r) => setImmediate(r));
    expect(made[0]!.closed).toBe(1);
    expect(made[2]!.closed).toBe(0);
    await clients.close();
  });

  it('closes a client retired while a delivery uses it only when that delivery ends', async () => {
    const { clients, made, create } = clientsWithFactory();
    let finish!: () => void;
    const running = clients.use('demo.crm', 'r1', create, () => new Promise<void>((resolve) => (finish = resolve)));
    await new Promise((r) => setImmediate(r));
    clients.forget('demo.crm');
    await new Promise((r) => setImmediate(r));
    expect(made[0]!.closed).toBe(0);
    finish();
    await running;
    await new Promise((r) => setImmediate(r));
    expect(made[0]!.closed).toBe(1);
    await clients.close();
  });

  it('does not keep a client that could not be made', async () => {
    const clients = new DestinationClients({ idleMs: 60_000, maxAgeMs: 600_000 }, log);
    let attempts = 0;
    const failing = async (): Promise<Destination> => {
      attempts++;
      throw new Error('refused');
    };
    await expect(clients.use('demo.crm', 'r1', failing, async () => undefined)).rejects.toThrow('refused');
    await expect(clients.use('demo.crm', 'r1', failing, async () => undefined)).rejects.toThrow('refused');
    expect(attempts).toBe(2);
    await clients.close();
  });

  it('closes every client once on shutdown, and takes no delivery after', async () => {
    const { clients, made, deliver } = clientsWithFactory();
    await deliver('demo.a', 'r1');
    await deliver('demo.b', 'r1');
    await Promise.all([clients.close(), clients.close()]);
    await clients.close();
    expect(made.map((d) => d.closed)).toEqual([1, 1]);
    await expect(deliver('demo.a', 'r1')).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });

  it('closes a client left unused past its idle time', async () => {
    const { clients, made, deliver } = clientsWithFactory({ idleMs: 50, maxAgeMs: 600_000 });
    await deliver('demo.crm', 'r1');
    await waitFor(() => made[0]!.closed === 1, 10_000, 'the idle client closed');
    await deliver('demo.crm', 'r1');
    expect(made.length).toBe(2);
    await clients.close();
  });
});
