/**
 * Redaction throughput: chat messages per second on one core through `redact()` with every kind
 * on, over a mix of typical messages (most with nothing to redact, some with a card, a phone
 * number, an email or an SSN).
 */
import { redact } from '../packages/common/src/data/redaction.js';

const messages = [
  'Hi, I cannot log in to my account since this morning, can you help?',
  'Sure, my card is 4111 1111 1111 1111 and it expires next year.',
  'You can reach me at (415) 555-2671 after 5pm.',
  'My email is jane.doe@example.com if that is easier.',
  'The order number is 12345678 and it never arrived.',
  'My SSN is 123-45-6789, is that needed?',
  'Thanks, that worked! Have a nice day.',
  'I tried again with +44 20 7946 0958 but the code never came.',
];
const seconds = Number(process.env.BENCH_SECONDS ?? 3);
for (let i = 0; i < 2_000; i++) redact(messages[i % messages.length]!); // warm up
let count = 0;
const started = performance.now();
const cpu0 = process.cpuUsage();
while (performance.now() - started < seconds * 1000) {
  for (const message of messages) redact(message);
  count += messages.length;
}
const cpu = process.cpuUsage(cpu0);
const cpuSeconds = (cpu.user + cpu.system) / 1e6;
console.log(JSON.stringify({ benchmark: 'redaction', messages: count, messages_per_cpu_second: Math.round(count / cpuSeconds), us_per_message: +((cpuSeconds / count) * 1e6).toFixed(1) }));
