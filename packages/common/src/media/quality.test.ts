import { describe, expect, it } from 'vitest';
import { isConnectionQuality, judgeQuality, qualityOfLoss, qualityOfScore, worseQuality } from './quality.js';

describe('connection quality', () => {
  it('bands mediasoup scores: 9-10 excellent, 6-8 good, 1-5 poor, 0 lost', () => {
    expect([10, 9, 8, 6, 5, 1, 0].map(qualityOfScore)).toEqual(['excellent', 'excellent', 'good', 'good', 'poor', 'poor', 'lost']);
    expect(qualityOfScore(Number.NaN)).toBe('unknown');
  });

  it('bands a loss ratio alike', () => {
    expect([0, 0.02, 0.05, 0.1, 0.3, 0.95].map(qualityOfLoss)).toEqual(['excellent', 'excellent', 'good', 'good', 'poor', 'lost']);
    expect(qualityOfLoss(-1)).toBe('unknown');
  });

  it('orders levels, unknown never making a known one worse', () => {
    expect(worseQuality('excellent', 'poor')).toBe('poor');
    expect(worseQuality('lost', 'good')).toBe('lost');
    expect(worseQuality('unknown', 'good')).toBe('good');
    expect(worseQuality('good', 'unknown')).toBe('good');
    expect(worseQuality('unknown', 'unknown')).toBe('unknown');
  });

  it('takes the worst stream, then lets round trip and bandwidth only lower it', () => {
    expect(judgeQuality({ connected: true, scores: [10, 10, 4] })).toBe('poor');
    expect(judgeQuality({ connected: true, scores: [10], rttMs: 400 })).toBe('good');
    expect(judgeQuality({ connected: true, scores: [10], rttMs: 900 })).toBe('poor');
    expect(judgeQuality({ connected: true, scores: [7], rttMs: 20 })).toBe('good');
    expect(judgeQuality({ connected: true, scores: [10], availableBitrateBps: 100_000, video: true })).toBe('poor');
    expect(judgeQuality({ connected: true, scores: [10], availableBitrateBps: 100_000, video: false })).toBe('excellent');
    expect(judgeQuality({ connected: true, scores: [10], availableBitrateBps: 300_000, video: true })).toBe('good');
  });

  it('is unknown with nothing to judge, lost when disconnected or nothing arrives', () => {
    expect(judgeQuality({ connected: true })).toBe('unknown');
    expect(judgeQuality({ connected: true, scores: [], rttMs: 900 })).toBe('unknown');
    expect(judgeQuality({ connected: false, scores: [10] })).toBe('lost');
    expect(judgeQuality({ connected: true, scores: [0, 10], rttMs: 10 })).toBe('lost');
    expect(judgeQuality({ connected: true, lossRatio: 0.04 })).toBe('good');
  });

  it('recognises its own level names only', () => {
    expect(isConnectionQuality('poor')).toBe(true);
    expect(isConnectionQuality('Poor')).toBe(false);
    expect(isConnectionQuality(3)).toBe(false);
  });
});
