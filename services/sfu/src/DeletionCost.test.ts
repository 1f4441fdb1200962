import { describe, expect, it } from 'vitest';
import { readSfuConfig } from './config.js';
import { WriteSchedule, podDeletionCost } from './DeletionCost.js';

const intervalMs = 15_000;
const schedule = () => new WriteSchedule({ intervalMs, backoff: { initialMs: intervalMs, maxMs: 300_000 }, maxRetryAfterMs: 600_000 });
const load = (rooms: number, transports: number, consumers: number) => ({ workers: 2, rooms, transports, producers: 0, consumers, maxConsumers: 1000, importedProducers: 0, pipes: 0 });

describe('the Pod deletion cost', () => {
  it('is the load as placement scores it, and the lowest of all while draining', () => {
    expect(podDeletionCost(load(0, 0, 0), false)).toBe(0);
    expect(podDeletionCost(load(1, 4, 6), false)).toBe(5 + 8 + 6);
    expect(podDeletionCost(load(1, 4, 6), true)).toBe(-2_147_483_648);
    // An annotation the controller reads as a 32-bit integer.
    expect(podDeletionCost(load(0, 0, 2 ** 40), false)).toBe(2_147_483_647);
  });
});

describe('when the deletion cost is written', () => {
  it('writes a cost the Pod does not hold, at once the first time', () => {
    const s = schedule();
    expect(s.due(0, 1_000)).toBe(true);
    s.started(1_000);
    s.succeeded(0);
    expect(s.due(0, 100_000)).toBe(false);
    expect(s.due(7, 100_000)).toBe(true);
  });

  it('never writes twice within the interval, however often the cost changes', () => {
    const s = schedule();
    s.started(0);
    s.succeeded(5);
    let writes = 0;
    for (let now = 0; now < 60_000; now += 250) {
      // The load moves every quarter of a second.
      const cost = now / 250;
      if (s.due(cost, now)) {
        s.started(now);
        s.succeeded(cost);
        writes++;
      }
    }
    expect(writes).toBe(3);
  });

  it('looks again when a write may go for a cost still to write, else each interval', () => {
    const s = schedule();
    s.started(0);
    s.succeeded(5);
    expect(s.waitMs(5, 1_000)).toBe(intervalMs);
    expect(s.waitMs(6, 1_000)).toBe(intervalMs - 1_000);
    expect(s.waitMs(6, 20_000)).toBe(0);
    expect(s.waitMs(5, 20_000)).toBe(intervalMs);
  });

  it('after failures waits a growing backoff, then starts again from the interval', () => {
    const s = schedule();
    const waits: number[] = [];
    let now = 0;
    for (let attempt = 0; attempt < 6; attempt++) {
      s.started(now);
      const wait = s.failed(now);
      waits.push(wait);
      expect(s.due(1, now + wait - 1)).toBe(false);
      now += Math.max(wait, intervalMs);
      expect(s.due(1, now)).toBe(true);
    }
    // Each within the upper half of a ceiling that doubles from the interval up to five minutes.
    waits.forEach((wait, attempt) => {
      const ceiling = Math.min(300_000, intervalMs * 2 ** attempt);
      expect(wait).toBeGreaterThanOrEqual(ceiling / 2);
      expect(wait).toBeLessThanOrEqual(ceiling);
    });
    s.started(now);
    s.succeeded(1);
    s.started(now + 1);
    expect(s.failed(now + 1)).toBeLessThanOrEqual(intervalMs);
  });

  it("honours the server's Retry-After when it is longer than the backoff, up to its cap", () => {
    const s = schedule();
    s.started(0);
    expect(s.failed(0, 120_000)).toBe(120_000);
    expect(s.due(1, 119_999)).toBe(false);
    expect(s.due(1, 120_000)).toBe(true);
    s.started(120_000);
    expect(s.failed(120_000, 24 * 3_600_000)).toBe(600_000);
    // A Retry-After shorter than the backoff does not shorten it.
    s.started(720_000);
    expect(s.failed(720_000, 1)).toBeGreaterThanOrEqual(30_000);
  });
});

describe('the deletion cost settings', () => {
  const base = { NATS_URL: 'tls://127.0.0.1:4222', NATS_NKEY_SEED_FILE: '/run/nats/seed', SFU_WORKERS: '1' };

  it('are off unless the Pod is named', () => {
    expect(readSfuConfig({ ...base, KUBERNETES_SERVICE_HOST: '10.96.0.1' }).deletionCost).toBeUndefined();
  });

  it('take the Pod, the API server and the service account', () => {
    const settings = readSfuConfig({ ...base, POD_NAME: 'sfu-7d9c-x2', POD_NAMESPACE: 'gateway-media', KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '6443' }).deletionCost;
    expect(settings).toEqual({
      pod: { name: 'sfu-7d9c-x2', namespace: 'gateway-media' },
      apiServer: { host: '10.96.0.1', port: 6443 },
      serviceAccountDir: '/var/run/secrets/kubernetes.io/serviceaccount',
      intervalMs: 15_000,
    });
  });

  it('refuse half a Pod, no API server, and names that would leave the Pod path', () => {
    expect(() => readSfuConfig({ ...base, POD_NAME: 'sfu-1', KUBERNETES_SERVICE_HOST: '10.96.0.1' })).toThrow(/POD_NAME and POD_NAMESPACE go together/);
    expect(() => readSfuConfig({ ...base, POD_NAME: 'sfu-1', POD_NAMESPACE: 'gateway-media' })).toThrow(/KUBERNETES_SERVICE_HOST is needed/);
    expect(() => readSfuConfig({ ...base, POD_NAME: '../secrets/x', POD_NAMESPACE: 'gateway-media', KUBERNETES_SERVICE_HOST: '10.96.0.1' })).toThrow(/POD_NAME: must be a Pod name/);
    expect(() => readSfuConfig({ ...base, POD_NAME: 'sfu-1', POD_NAMESPACE: 'a/b', KUBERNETES_SERVICE_HOST: '10.96.0.1' })).toThrow(/POD_NAMESPACE: must be a namespace name/);
  });
});
