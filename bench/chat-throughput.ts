/**
 * Chat throughput through one signaling process: N participants in a room, a few of them
 * sending as fast as the server acknowledges, every message redacted, sealed into JetStream
 * and fanned out to all N. Reports messages per second stored, deliveries per second, and the
 * signaling process's CPU per message (from /proc).
 */
import { TestClient } from '../test/support/wsClient.js';
import { demoToken } from '../test/support/tokens.js';
import { cpuTimes, startStack } from './stack.js';

const FANOUTS = (process.env.BENCH_CHAT_FANOUT ?? '2,10,50').split(',').map(Number);
const SENDERS = Number(process.env.BENCH_CHAT_SENDERS ?? 4);
const MESSAGES_PER_SENDER = Number(process.env.BENCH_CHAT_MESSAGES ?? 250);
/** A typical message with something to redact, so redaction is part of the cost. */
const TEXT = 'Hi, I was charged twice on card 4111 1111 1111 1111, call me at (415) 555-0132 please';

const stack = await startStack({
  workers: 1,
  signalingEnv: { SIGNALING_CHAT_RATE_PER_SECOND: '100000', SIGNALING_CHAT_RATE_BURST: '100000', SIGNALING_RATE_LIMIT_PER_SECOND: '100000', SIGNALING_RATE_LIMIT_BURST: '100000' },
});
try {
  const results = [];
  for (const fanout of FANOUTS) {
    const room = `bench-chat-${fanout}-${Date.now()}`;
    const clients: TestClient[] = [];
    for (let i = 0; i < fanout; i++) {
      const client = await TestClient.open(stack.signaling.wsUrl);
      const joined = await client.request('join', { token: await demoToken({ room, identity: `p${i}`, role: i === 0 ? 'agent' : 'end_user', canPublish: false }), protocolVersion: 1 });
      if (joined.error) throw new Error(joined.error.message);
      clients.push(client);
    }
    const senders = clients.slice(0, Math.min(SENDERS, fanout));
    const total = senders.length * MESSAGES_PER_SENDER;
    const received = () => clients.reduce((sum, c) => sum + c.notifications.filter((n) => 'message' in n).length, 0);
    const cpu0 = await cpuTimes(stack.signaling.pid);
    const t0 = performance.now();
    await Promise.all(
      senders.map(async (sender, s) => {
        // A window of requests in flight per sender, as a busy client would keep.
        const inFlight = new Set<Promise<unknown>>();
        for (let i = 0; i < MESSAGES_PER_SENDER; i++) {
          const request = sender.request('sendMessage', { text: `${TEXT} #${s}-${i}`, clientMessageId: `${s}-${i}` }).then((r) => {
            if (r.error) throw new Error(r.error.message);
          });
          inFlight.add(request);
          void request.finally(() => inFlight.delete(request));
          if (inFlight.size >= 16) await Promise.race(inFlight);
        }
        await Promise.all(inFlight);
      }),
    );
    const storedSeconds = (performance.now() - t0) / 1000;
    while (received() < total * fanout) await new Promise((r) => setTimeout(r, 5));
    const seconds = (performance.now() - t0) / 1000;
    const cpu1 = await cpuTimes(stack.signaling.pid);
    const cpu = cpu1.user + cpu1.system - cpu0.user - cpu0.system;
    results.push({
      participants: fanout,
      messages: total,
      messages_per_s: Math.round(total / storedSeconds),
      deliveries_per_s: Math.round((total * fanout) / seconds),
      signaling_cpu_ms_per_message: +((cpu / total) * 1000).toFixed(3),
    });
    for (const client of clients) client.close();
  }
  console.log(JSON.stringify({ benchmark: 'chat_throughput', senders: SENDERS, results }));
} finally {
  await stack.stop();
}
