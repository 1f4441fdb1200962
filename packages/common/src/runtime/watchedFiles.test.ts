import { rmSync, symlinkSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { SecretVolume } from '@gateway/testing';
import { GatewayError, ErrorCode } from '../errors.js';
import { WatchedFiles } from './watchedFiles.js';

const log = pino({ level: 'silent' });

describe('WatchedFiles', () => {
  const cleanup: Array<() => void> = [];
  afterEach(() => {
    for (const step of cleanup.splice(0)) step();
  });

  const watch = (initial: string) => {
    const volume = SecretVolume.create({ 'value.txt': initial });
    const applied: string[] = [];
    const files = new WatchedFiles({
      source: 'test',
      files: [volume.file('value.txt')],
      initial: [Buffer.from(initial)],
      apply: ([contents]) => {
        const text = contents!.toString();
        if (text.startsWith('bad')) throw new GatewayError(ErrorCode.CONFIG_INVALID, 'refused');
        applied.push(text);
      },
      log,
      intervalMs: 60_000,
    });
    cleanup.push(
      () => files.close(),
      () => volume.remove(),
    );
    return { volume, files, applied };
  };

  it('takes up each change once, refuses bad contents once, and counts a return to the contents in use as no change', async () => {
    const { volume, files, applied } = watch('one');
    await files.check();
    expect(applied).toEqual([]);
    volume.update({ 'value.txt': 'two' });
    await files.check();
    await files.check();
    expect(applied).toEqual(['two']);
    volume.update({ 'value.txt': 'bad three' });
    await files.check();
    volume.update({ 'value.txt': 'two' });
    await files.check();
    expect(applied).toEqual(['two']);
    // Unreadable for a moment (the file gone), then back as it was: nothing to take up.
    rmSync(volume.file('value.txt'));
    await files.check();
    symlinkSync('..data/value.txt', volume.file('value.txt'));
    await files.check();
    expect(applied).toEqual(['two']);
    volume.update({ 'value.txt': 'four' });
    await files.check();
    expect(applied).toEqual(['two', 'four']);
  });
});
