/**
 * Signaling memory per idle connection: N WebSocket clients join a room (sessions held, no
 * media) and stay idle; the growth of the signaling process's resident memory is divided by N.
 */
import { TestClient } from '../test/support/wsClient.js';
import { demoToken } from '../test/support/tokens.js';
import { rssBytes, startStack } from './stack.js';

const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 500);
const stack = await startStack();
const clients: TestClient[] = [];
try {
  const pid = stack.signaling.pid;
  // Warm up code paths, then measure from a settled baseline.
  const warm = await TestClient.open(stack.signaling.wsUrl);
  await warm.request('join', { token: await demoToken({ room: 'bench-mem-warm', identity: 'warm', role: 'agent' }) });
  await new Promise((r) => setTimeout(r, 2_000));
  const before = await rssBytes(pid);
  for (let i = 0; i < CONNECTIONS; i++) {
    const client = await TestClient.open(stack.signaling.wsUrl);
    const room = `bench-mem-${i % 50}`;
    const answer = await client.request('join', { token: await demoToken({ room, identity: `user-${i}`, role: 'end_user' }) });
    if (!answer.join) throw new Error(`join failed: ${JSON.stringify(answer.error)}`);
    clients.push(client);
  }
  await new Promise((r) => setTimeout(r, 5_000));
  const after = await rssBytes(pid);
  console.log(
    JSON.stringify({
      benchmark: 'signaling_memory_per_idle_connection',
      connections: CONNECTIONS,
      rss_before_mib: +(before / 2 ** 20).toFixed(1),
      rss_after_mib: +(after / 2 ** 20).toFixed(1),
      kib_per_connection: +((after - before) / CONNECTIONS / 1024).toFixed(1),
    }),
  );
} finally {
  for (const c of clients) c.close();
  await stack.stop();
}
