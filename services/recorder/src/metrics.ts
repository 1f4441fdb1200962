import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { RecordingState } from '@gateway/proto/gateway/recorder/v1/recorder';
import type { RecorderObserver } from './observer.js';

/** The recorder's job figures, fed by its observer. */
export function observeRecorderMetrics(observer: RecorderObserver, registry: Registry): void {
  const running = new Set<string>();
  observer.on('jobadded', (recordingId) => running.add(recordingId));
  observer.on('jobremoved', (recordingId) => running.delete(recordingId));
  new Gauge({
    name: 'gateway_recorder_jobs_active',
    help: 'recording jobs running on this node',
    registers: [registry],
    collect() {
      this.set(running.size);
    },
  });
  const ended = new Counter({ name: 'gateway_recorder_jobs_ended_total', help: 'recording jobs ended, by final state', labelNames: ['state'], registers: [registry] });
  const jobCpu = new Histogram({
    name: 'gateway_recorder_job_cpu_seconds',
    help: 'CPU seconds the capture of a recording used, per job',
    buckets: [0.5, 1, 2, 5, 10, 30, 60, 120, 300],
    registers: [registry],
  });
  const storedBytes = new Counter({ name: 'gateway_recorder_stored_bytes_total', help: 'bytes of recordings stored (before encryption)', registers: [registry] });
  observer.on('jobended', (recording, cpuSeconds) => {
    jobCpu.observe(cpuSeconds);
    ended.inc({ state: RecordingState[recording.state] });
    storedBytes.inc(recording.artifacts.reduce((sum, a) => sum + a.sizeBytes, 0));
  });
  // Each capture after a recording's first cuts its segments: a rate far above the rate of new
  // tracks means ffmpeg keeps dying or the room keeps changing.
  const captures = new Counter({
    name: 'gateway_recorder_captures_started_total',
    help: 'captures (ffmpeg runs) started by recording jobs: one per recording, plus one per change of its tracks, resume or restart',
    registers: [registry],
  });
  observer.on('capturestarted', () => captures.inc());
  observer.on('orphanfinished', (recording) => ended.inc({ state: RecordingState[recording.state] }));
}
