import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { RecordingState, type Recording } from '@gateway/proto/gateway/recorder/v1/recorder';
import { RecorderObserver } from './observer.js';
import { observeRecorderMetrics } from './metrics.js';

/** The recorder's metrics follow its observer alone. */
describe('recorder metrics', () => {
  it("count running jobs, ended jobs by state, stored bytes, captures and CPU from the observer's events", async () => {
    const registry = new Registry();
    const observer = new RecorderObserver();
    observeRecorderMetrics(observer, registry);
    const value = async (name: string, labels: Record<string, string> = {}) => {
      const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
      const values = (metric?.values ?? []) as unknown as Array<{ value: number; labels: Record<string, string | number>; metricName?: string }>;
      return values.find((v) => (v.metricName ?? name) === (name.endsWith('_seconds') ? `${name}_count` : name) && Object.entries(labels).every(([k, l]) => v.labels[k] === l))?.value;
    };

    observer.safeEmit('jobadded', 'RC_1');
    observer.safeEmit('jobadded', 'RC_2');
    expect(await value('gateway_recorder_jobs_active')).toBe(2);
    const done = { recordingId: 'RC_1', state: RecordingState.RECORDING_STATE_COMPLETE, artifacts: [{ sizeBytes: 1_000 }, { sizeBytes: 500 }] } as unknown as Recording;
    observer.safeEmit('jobremoved', 'RC_1');
    observer.safeEmit('jobended', done, 3);
    expect(await value('gateway_recorder_jobs_active')).toBe(1);
    expect(await value('gateway_recorder_jobs_ended_total', { state: 'RECORDING_STATE_COMPLETE' })).toBe(1);
    expect(await value('gateway_recorder_stored_bytes_total')).toBe(1_500);
    expect(await value('gateway_recorder_job_cpu_seconds')).toBe(1);

    // A recording finished for a recorder that died counts as ended, with nothing stored here.
    observer.safeEmit('orphanfinished', { recordingId: 'RC_9', state: RecordingState.RECORDING_STATE_PARTIAL, artifacts: [{ sizeBytes: 7 }] } as unknown as Recording);
    expect(await value('gateway_recorder_jobs_ended_total', { state: 'RECORDING_STATE_PARTIAL' })).toBe(1);
    expect(await value('gateway_recorder_stored_bytes_total')).toBe(1_500);

    observer.safeEmit('capturestarted');
    observer.safeEmit('capturestarted');
    expect(await value('gateway_recorder_captures_started_total')).toBe(2);
  });
});
