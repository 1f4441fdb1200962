import { describe, expect, it } from 'vitest';
import { MediaKind, TrackSource } from '@gateway/proto/gateway/sfu/v1/sfu';
import { TRACK_SOURCE_NAMES, mediaKindName, mediaKindOf, trackSourceName, trackSourceOf } from './tracks.js';

describe('track sources and kinds', () => {
  it('maps every named source to a distinct protocol value and back', () => {
    const values = TRACK_SOURCE_NAMES.map(trackSourceOf);
    expect(new Set(values).size).toBe(TRACK_SOURCE_NAMES.length);
    expect(values).not.toContain(TrackSource.TRACK_SOURCE_UNSPECIFIED);
    for (const name of TRACK_SOURCE_NAMES) expect(trackSourceName(trackSourceOf(name))).toBe(name);
  });

  it('names every protocol source but UNSPECIFIED, so a source added to the protocol fails here until it is mapped', () => {
    const protocolSources = Object.values(TrackSource).filter((v): v is TrackSource => typeof v === 'number' && v !== TrackSource.TRACK_SOURCE_UNSPECIFIED && v !== TrackSource.UNRECOGNIZED);
    expect(protocolSources.length).toBeGreaterThan(0);
    expect(protocolSources.every((v) => trackSourceName(v) !== undefined)).toBe(true);
  });

  it('gives nothing for what it does not know, without reading inherited keys', () => {
    expect(trackSourceOf(undefined)).toBe(TrackSource.TRACK_SOURCE_UNSPECIFIED);
    expect(trackSourceOf('toString')).toBe(TrackSource.TRACK_SOURCE_UNSPECIFIED);
    expect(trackSourceOf('__proto__')).toBe(TrackSource.TRACK_SOURCE_UNSPECIFIED);
    expect(trackSourceName(TrackSource.TRACK_SOURCE_UNSPECIFIED)).toBeUndefined();
    expect(trackSourceName(99 as TrackSource)).toBeUndefined();
  });

  it('maps kinds both ways', () => {
    expect(mediaKindName(mediaKindOf('audio'))).toBe('audio');
    expect(mediaKindName(mediaKindOf('video'))).toBe('video');
    expect(mediaKindName(MediaKind.MEDIA_KIND_UNSPECIFIED)).toBeUndefined();
  });
});
