/**
 * The residue scan's time over a full JetStream: BENCH_RESIDUE_ENTRIES entries (100,000 by
 * default) of every kind the scanner reads, mostly live (rooms with their participants, session,
 * placement, chat key and messages, Smart Actions; recordings waiting for delivery with their key
 * and event), some residue (rooms that ended but left their placement, chat key and Smart
 * Actions; data keys without artifacts; events whose artifacts were delivered). Prints the scan's
 * time and what it found, which must be exactly the residue planted.
 */
import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import { RecordingReady, SessionEnded } from '@gateway/proto/gateway/events/v1/events';
import { RecordingState } from '@gateway/proto/gateway/recorder/v1/recorder';
import { SmartAction } from '@gateway/proto/gateway/signaling/v1/signaling';
import { Residue, buckets, subjects } from '@gateway/common';
import { NatsServer } from '@gateway/testing';

const TOTAL = Number(process.env.BENCH_RESIDUE_ENTRIES ?? 100_000);
/** Writes in flight at once. */
const PARALLEL = 512;

const nats = await NatsServer.start();
const nc = await nats.connect('admin');
const js = jetstream(nc);
const kvm = new Kvm(nc);
const kv = Object.fromEntries(
  await Promise.all([buckets.participants, buckets.roomSessions, buckets.roomPlacement, buckets.chatKeys, buckets.smartActions, buckets.dataKeys].map(async (b) => [b, await kvm.open(b)] as const)),
);
const artifacts = await new Objm(nc).open(buckets.artifacts);

let written = 0;
let planted = 0;
const pending = new Set<Promise<unknown>>();
async function write(work: () => Promise<unknown>, residue = false): Promise<void> {
  written++;
  if (residue) planted++;
  const p = work().finally(() => pending.delete(p));
  pending.add(p);
  if (pending.size >= PARALLEL) await Promise.race(pending);
}
const action = (id: string) => SmartAction.encode(SmartAction.fromPartial({ actionId: id, kind: 'photo' })).finish();
const ready = (id: string, artifactId: string) =>
  RecordingReady.encode(
    RecordingReady.fromPartial({
      recording: {
        recordingId: id,
        tenant: 'demo',
        room: 'r',
        state: RecordingState.RECORDING_STATE_COMPLETE,
        artifacts: [{ artifactId, kind: 'audio', contentType: 'audio/mpeg', sizeBytes: 1, durationMs: 1, part: 0 }],
      },
    }),
  ).finish();

const fillStarted = performance.now();
let n = 0;
while (written < TOTAL) {
  n++;
  const room = `room${n}`;
  if (n % 20 === 0) {
    // A room that ended and left its placement, chat key and a Smart Action behind.
    await write(() => kv[buckets.roomPlacement]!.put(`demo.${room}`, 'sfu-gone'), true);
    await write(() => kv[buckets.chatKeys]!.put(`demo.${room}`, 'key'), true);
    await write(() => kv[buckets.smartActions]!.put(`demo.${room}.SA${n}`, action(`SA${n}`)), true);
    // A data key whose artifact is gone; an event whose artifact was delivered.
    await write(() => kv[buckets.dataKeys]!.put(`demo.recordings.AK${n}`, '{}'), true);
    await write(() => js.publish(subjects.recordingReady('demo'), ready(`RD${n}`, `AD${n}`)), true);
    continue;
  }
  if (n % 4 === 0) {
    // A recording waiting for delivery: its bytes, key and event; a session waiting too.
    await write(() => artifacts.putBlob({ name: `demo.AR${n}` }, new Uint8Array(64)));
    await write(() => kv[buckets.dataKeys]!.put(`demo.recordings.AR${n}`, '{}'));
    await write(() => js.publish(subjects.recordingReady('demo'), ready(`RC${n}`, `AR${n}`)));
    await write(() => js.publish(subjects.sessionEnded('demo'), SessionEnded.encode(SessionEnded.fromPartial({ tenant: 'demo', room, sessionId: `SE${n}` })).finish()));
    continue;
  }
  // A live room: two participants, its session, placement, chat key, two messages and a Smart Action.
  await write(() => kv[buckets.participants]!.put(`demo.${room}.PA${n}a`, 'p'));
  await write(() => kv[buckets.participants]!.put(`demo.${room}.PA${n}b`, 'p'));
  await write(() => kv[buckets.roomSessions]!.put(`demo.${room}`, 's'));
  await write(() => kv[buckets.roomPlacement]!.put(`demo.${room}`, 'sfu-1'));
  await write(() => kv[buckets.chatKeys]!.put(`demo.${room}`, 'key'));
  await write(() => js.publish(subjects.chat('demo', room), 'sealed'));
  await write(() => js.publish(subjects.chat('demo', room), 'sealed'));
  await write(() => kv[buckets.smartActions]!.put(`demo.${room}.SA${n}`, action(`SA${n}`)));
}
await Promise.all(pending);
const fillSeconds = (performance.now() - fillStarted) / 1000;

const residueNc = await nats.connect('residue');
const residue = await Residue.open(residueNc);
const started = performance.now();
const cpu0 = process.cpuUsage();
const report = await residue.scan({ graceMs: 0 });
const cpu = process.cpuUsage(cpu0);
const scanSeconds = (performance.now() - started) / 1000;
const found = report.items.length;
console.log(
  JSON.stringify({
    benchmark: 'residue-scan',
    entries_written: written,
    entries_read: report.entries,
    fill_s: +fillSeconds.toFixed(1),
    scan_s: +scanSeconds.toFixed(2),
    scan_cpu_s: +((cpu.user + cpu.system) / 1e6).toFixed(2),
    entries_per_s: Math.round(report.entries / scanSeconds),
    residue_planted: planted,
    residue_found: found,
    by_kind: Object.fromEntries(report.summary.map((s) => [`${s.store}/${s.kind}`, s.count])),
  }),
);
await residueNc.close();
await nc.close();
await nats.stop();
if (found !== planted) process.exit(1);
