import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { NatsServer } from '@gateway/testing';
import { readSubject } from './streamRead.js';

describe('readSubject', () => {
  let nats: NatsServer;
  let nc: NatsConnection;

  beforeAll(async () => {
    nats = await NatsServer.start();
    nc = await nats.connect();
    await (await jetstreamManager(nc)).streams.add({ name: 'READS', subjects: ['reads.>'] });
  });

  afterAll(async () => {
    await nc?.close();
    await nats?.stop();
  });

  const read = async (subject: string) => {
    const out: string[] = [];
    for await (const m of readSubject(jetstream(nc), await jetstreamManager(nc), 'READS', subject)) out.push(m.string());
    return out;
  };

  it('reads every message of the subject in order, and only that subject', async () => {
    const js = jetstream(nc);
    for (let i = 0; i < 300; i++) await js.publish('reads.a', `a${i}`);
    await js.publish('reads.b', 'b0');
    const all = await read('reads.a');
    expect(all).toHaveLength(300);
    expect(all[0]).toBe('a0');
    expect(all[299]).toBe('a299');
  });

  it('reads nothing from a subject that never had a message, at once', async () => {
    const started = Date.now();
    expect(await read('reads.never')).toEqual([]);
    expect(Date.now() - started).toBeLessThan(500);
  });

  it('ends when the subject holds nothing, instead of waiting for messages that will not come', async () => {
    const js = jetstream(nc);
    const jsm = await jetstreamManager(nc);
    const ack = await js.publish('reads.c', 'c0');
    // The only message is erased (as a redaction or a delivery does) before the read.
    await jsm.streams.deleteMessage('READS', ack.seq);
    const started = Date.now();
    expect(await read('reads.c')).toEqual([]);
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
