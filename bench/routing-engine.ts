/**
 * The routing engine's decisions on one core (issue: 2,000 agents, 50 queues, 10,000 waiting
 * contacts on one routing process): each round a share of the agents frees up and a decision
 * pass (`tick`) offers them contacts, which they accept. Prints decisions (offers) per second,
 * the time of one pass (p50/p99: a request's wait for its offer is at most one pass behind),
 * and the memory per waiting contact. The engine only; storing and announcing come on top.
 */
import { RoutingEngine } from '../services/routing/src/engine/RoutingEngine.js';

const AGENTS = Number(process.env.BENCH_AGENTS ?? 2_000);
const QUEUES = Number(process.env.BENCH_QUEUES ?? 50);
const CONTACTS = Number(process.env.BENCH_CONTACTS ?? 10_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 200);

const engine = new RoutingEngine({ offerTimeoutMs: 15_000 });
const skills = ['billing', 'tech', 'sales', 'returns', 'vip'];
let now = 1_000_000;
for (let q = 0; q < QUEUES; q++) {
  engine.setQueue({ queueId: `q${q}`, priority: q % 3, requiredSkills: { [skills[q % skills.length]!]: 1 + (q % 4) }, serviceLevelSeconds: 30 });
}
// Ten profiles, each serving ten queues.
for (let p = 0; p < 10; p++) {
  engine.setProfile({ profileId: `p${p}`, queues: Array.from({ length: 10 }, (_, i) => ({ queueId: `q${(p * 5 + i) % QUEUES}`, priority: 1 + (i % 3) })), capacity: { call: 1, chat: 3 } });
}
for (let a = 0; a < AGENTS; a++) {
  engine.setAgent({ agentId: `a${a}`, profileId: `p${a % 10}`, skills: Object.fromEntries(skills.map((s, i) => [s, 1 + ((a + i) % 5)])) }, now - a);
  engine.setStatus(`a${a}`, 'available', now - a);
}
// Every agent takes a call first, so the contacts then wait.
for (let c = 0; c < AGENTS; c++) engine.enqueue({ contactId: `first${c}`, queueId: `q${c % QUEUES}`, channel: 'voice' }, now);
for (const e of engine.tick(now)) if (e.type === 'offered') engine.accept(e.contactId, e.agentId);
const connected = [...engine.contacts.values()].filter((c) => c.state === 'connected');

global.gc?.();
const heapBefore = process.memoryUsage().heapUsed;
for (let c = 0; c < CONTACTS; c++) engine.enqueue({ contactId: `c${c}`, queueId: `q${c % QUEUES}`, channel: c % 4 === 0 ? 'chat' : 'voice' }, now + c);
global.gc?.();
const bytesPerContact = (process.memoryUsage().heapUsed - heapBefore) / CONTACTS;

const passes: number[] = [];
let decisions = 0;
const cpu0 = process.cpuUsage();
let next = 0;
for (let round = 0; round < ROUNDS; round++) {
  now += 1_000;
  // Ten contacts end each round; their agents wrap up and are free again.
  for (let i = 0; i < 10 && next < connected.length; i++, next++) {
    const contact = connected[next]!;
    const agentId = contact.agentId!;
    engine.complete(contact.contactId, now, now - 60_000);
    if (engine.agents.get(agentId)!.status === 'after_contact_work') engine.wrapUp(agentId, now);
  }
  // New contacts keep arriving, so the queues stay full.
  for (let i = 0; i < 10; i++) engine.enqueue({ contactId: `n${round}-${i}`, queueId: `q${(round + i) % QUEUES}`, channel: 'voice' }, now);
  const started = performance.now();
  const events = engine.tick(now);
  passes.push(performance.now() - started);
  for (const e of events) {
    if (e.type !== 'offered') continue;
    decisions++;
    engine.accept(e.contactId, e.agentId);
    connected.push(engine.contacts.get(e.contactId)!);
  }
}
const cpu = process.cpuUsage(cpu0);
const cpuSeconds = (cpu.user + cpu.system) / 1e6;
passes.sort((a, b) => a - b);
const pct = (p: number) => +passes[Math.min(passes.length - 1, Math.floor(passes.length * p))]!.toFixed(2);
console.log(
  JSON.stringify({
    benchmark: 'routing-engine',
    agents: AGENTS,
    queues: QUEUES,
    waiting: CONTACTS,
    decisions,
    decisions_per_cpu_second: Math.round(decisions / cpuSeconds),
    pass_ms_p50: pct(0.5),
    pass_ms_p99: pct(0.99),
    bytes_per_waiting_contact: Math.round(bytesPerContact),
  }),
);
