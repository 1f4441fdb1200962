/**
 * The routing service as deployed, on one process (issue: 2,000 agents, 50 queues, 10,000
 * waiting contacts): a real nats-server, a real routing process, commands sent over NATS the way
 * signaling sends them. Prints:
 *   - the time a command takes with the tenant full (requestSupport into 10,000 waiting, p50/p99),
 *   - request-to-offer latency (requestSupport sent to the agent's offer event received, p50/p99)
 *     for contacts asking in queues where an agent is free, with 10,000 others waiting,
 *   - decisions per second: 2,000 agents going available at once over the backlog, to the last
 *     of their offers,
 *   - the routing process's memory per waiting contact (RSS).
 * Every figure includes storing each decision with compare-and-set and announcing it.
 * BENCH_PROFILE=1 runs the routing process with --cpu-prof and names the profile written at its
 * stop (`node --import tsx bench/cpuprofile-top.ts <file>` lists where the time went).
 */
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buckets, createLogger, openBucket, subjects } from '@gateway/common';
import { AgentEvent, AgentStatus, Channel, Command, Reply } from '@gateway/proto/gateway/routing/v1/routing';
import { NatsServer, startRoutingProcess } from '@gateway/testing';
import type { NatsConnection } from '@nats-io/transport-node';
import { DirectoryStore } from '../services/routing/src/directory/DirectoryStore.js';

const AGENTS = Number(process.env.BENCH_AGENTS ?? 2_000);
const QUEUES = Number(process.env.BENCH_QUEUES ?? 50);
const CONTACTS = Number(process.env.BENCH_CONTACTS ?? 10_000);
const PROBES = Number(process.env.BENCH_PROBES ?? 200);
const TENANT = 'demo';

const quantile = (values: number[], q: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
};
const rssKiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);

async function send(nc: NatsConnection, command: NonNullable<Command['command']>): Promise<NonNullable<Reply['result']>> {
  const answer = await nc.request(subjects.routingCommand(TENANT), Command.encode({ tenant: TENANT, command }).finish(), { timeout: 180_000 });
  const result = Reply.decode(answer.data).result;
  if (!result || result.$case === 'error') throw new Error(`routing refused ${command.$case}: ${result?.$case === 'error' ? result.value.code : 'nothing'}`);
  return result;
}

const nats = await NatsServer.start();
// Queue q<i> is served by profile p<i> only: the first 40 queues' agents stay away (their
// contacts wait), the last 10 queues' agents are free for the latency probes.
const directory = {
  queues: Array.from({ length: QUEUES }, (_, q) => ({ queueId: `q${q}`, name: `Queue ${q}`, priority: q % 3, requiredSkills: {}, serviceLevelSeconds: 30, offerTimeoutSeconds: 300 })),
  profiles: Array.from({ length: QUEUES }, (_, q) => ({ profileId: `p${q}`, name: `Profile ${q}`, queues: [{ queueId: `q${q}`, priority: 1 }], capacity: { call: 1, chat: 3 } })),
  people: Array.from({ length: AGENTS }, (_, a) => ({ personId: `a${a}`, name: `Agent ${a}`, roles: ['agent'], skills: {}, profileId: `p${a % QUEUES}` })),
};
const admin = await nats.connect('routing');
await new DirectoryStore(await openBucket(admin, buckets.routingDirectory), createLogger('bench', 'silent'), { people: 10_000, teams: 500, queues: 500, profiles: 500 }).seed(TENANT, directory);
const profileDir = process.env.BENCH_PROFILE ? mkdtempSync(path.join(tmpdir(), 'routing-profile-')) : undefined;
const routing = await startRoutingProcess({
  natsUrl: nats.url,
  nodeArgs: profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [],
  env: { LOG_LEVEL: 'warn', ROUTING_END_USER_GRACE_SECONDS: '3600', ROUTING_PRESENCE_TIMEOUT_SECONDS: '300', ROUTING_AGENT_GRACE_SECONDS: '3600' },
});
const nc = await nats.connect('signaling');
try {
  // The owner is ready once it answers.
  for (;;) {
    try {
      await send(nc, { $case: 'queueView', value: { supervisorId: 'nobody' } });
      break;
    } catch (error) {
      if (/PERMISSION_DENIED/.test(String(error))) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
  const allAgents = directory.people.map((p) => p.personId);
  await send(nc, { $case: 'presence', value: { replica: 'bench', agentIds: allAgents } });
  const offeredAt = new Map<string, number>();
  let offersSeen = 0;
  nc.subscribe(`gateway.${TENANT}.routing.agent.*`, {
    callback: (_error, msg) => {
      const event = AgentEvent.decode(msg.data).event;
      if (event?.$case !== 'offered') return;
      offersSeen++;
      offeredAt.set(event.value.contactId, performance.now());
    },
  });

  // Fill the queues nobody serves now: every agent is offline until it goes available.
  const rssBefore = rssKiB(routing.pid);
  const commandMs: number[] = [];
  for (let c = 0; c < CONTACTS; c++) {
    const started = performance.now();
    await send(nc, {
      $case: 'requestSupport',
      value: { endUser: `user${c}`, queueId: `q${c % 40}`, channel: Channel.CHANNEL_VOICE, contextJson: '{"order":"A-1"}', contactId: '', name: '', crmContactId: '' },
    });
    commandMs.push(performance.now() - started);
    if (process.env.BENCH_DEBUG && c % 1_000 === 999) process.stderr.write(`${c + 1} waiting, last ${commandMs.at(-1)!.toFixed(1)} ms\n`);
  }
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const rssAfter = rssKiB(routing.pid);

  // Probes: agents of the last 10 queues available; a new contact there is offered at once.
  const probeAgents = allAgents.filter((_, a) => a % QUEUES >= 40);
  for (const agentId of probeAgents) await send(nc, { $case: 'setStatus', value: { agentId, status: AgentStatus.AGENT_STATUS_AVAILABLE, reason: '' } });
  const latencies: number[] = [];
  for (let p = 0; p < PROBES; p++) {
    const started = performance.now();
    const state = await send(nc, {
      $case: 'requestSupport',
      value: { endUser: `probe${p}`, queueId: `q${40 + (p % 10)}`, channel: Channel.CHANNEL_CHAT, contextJson: '', contactId: '', name: '', crmContactId: '' },
    });
    if (state.$case !== 'contact') throw new Error('no contact');
    // The offer may come before the answer or after it.
    while (!offeredAt.has(state.value.contactId) && performance.now() - started < 5_000) await new Promise((resolve) => setTimeout(resolve, 1));
    latencies.push((offeredAt.get(state.value.contactId) ?? performance.now()) - started);
  }

  // Decisions per second: the 1,600 agents of the waiting queues go available at once.
  let backlogAgents = allAgents.filter((_, a) => a % QUEUES < 40);
  if (process.env.BENCH_DEBUG) {
    // A few alone first, to see what one costs; the burst is the others.
    const alone = backlogAgents.slice(0, 10);
    backlogAgents = backlogAgents.slice(alone.length);
    for (const agentId of alone) {
      const t = performance.now();
      await send(nc, { $case: 'setStatus', value: { agentId, status: AgentStatus.AGENT_STATUS_AVAILABLE, reason: '' } });
      process.stderr.write(`setStatus ${(performance.now() - t).toFixed(1)} ms\n`);
    }
  }
  const seenBefore = offersSeen;
  const started = performance.now();
  await Promise.all(backlogAgents.map((agentId) => send(nc, { $case: 'setStatus', value: { agentId, status: AgentStatus.AGENT_STATUS_AVAILABLE, reason: '' } })));
  const expected = Math.min(backlogAgents.length, CONTACTS);
  while (offersSeen - seenBefore < expected && performance.now() - started < 180_000) await new Promise((resolve) => setTimeout(resolve, 20));
  const decisionSeconds = (performance.now() - started) / 1000;

  console.log(
    JSON.stringify({
      bench: 'routing-service',
      agents: AGENTS,
      queues: QUEUES,
      waiting: CONTACTS,
      requestSupportP50Ms: +quantile(commandMs.slice(-1_000), 0.5).toFixed(2),
      requestSupportP99Ms: +quantile(commandMs.slice(-1_000), 0.99).toFixed(2),
      requestToOfferP50Ms: +quantile(latencies, 0.5).toFixed(2),
      requestToOfferP99Ms: +quantile(latencies, 0.99).toFixed(2),
      decisionsPerSecond: Math.round((offersSeen - seenBefore) / decisionSeconds),
      offersMade: offersSeen - seenBefore,
      rssBytesPerWaitingContact: Math.round(((rssAfter - rssBefore) * 1024) / CONTACTS),
      leaseLost: /routing lease was lost/.test(routing.logs),
    }),
  );
} catch (error) {
  process.stderr.write(`${String(error)}\n${routing.logs.slice(-3000)}\n`);
  process.exitCode = 1;
} finally {
  await nc.close();
  await admin.close();
  // The profile is written as the process exits: give it time to.
  await routing.stop('SIGINT', profileDir ? 120_000 : 10_000);
  await nats.stop();
  if (profileDir)
    process.stderr.write(
      `CPU profile: ${
        readdirSync(profileDir)
          .map((file) => path.join(profileDir, file))
          .join(' ') || 'none written'
      }\n`,
    );
}
