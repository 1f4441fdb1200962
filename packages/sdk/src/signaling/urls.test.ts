import { describe, expect, it } from 'vitest';
import { GatewayError } from '../errors.js';
import { deskUrl, signalingHttpBase, signalingUrl } from './urls.js';

describe('signaling URLs', () => {
  it('derives the WebSocket URL from an http(s) base', () => {
    expect(signalingUrl('http://localhost:8080')).toBe('ws://localhost:8080/ws');
    expect(signalingUrl('https://gw.example.com/')).toBe('wss://gw.example.com/ws');
    expect(signalingUrl('wss://gw.example.com/custom/ws')).toBe('wss://gw.example.com/custom/ws');
    expect(() => signalingUrl('ftp://x')).toThrow(GatewayError);
  });

  it('derives the HTTP base for uploads and attachment URLs from the same url', () => {
    expect(signalingHttpBase('http://localhost:8080')).toBe('http://localhost:8080');
    expect(signalingHttpBase('wss://gw.example.com/ws?x=1')).toBe('https://gw.example.com');
    expect(signalingHttpBase('https://gw.example.com/custom/ws')).toBe('https://gw.example.com/custom');
  });

  it('derives the desk URL beside the room one', () => {
    expect(deskUrl('http://localhost:8080')).toBe('ws://localhost:8080/v1/desk');
    expect(deskUrl('wss://gw.example.com/ws?x=1')).toBe('wss://gw.example.com/v1/desk');
    expect(deskUrl('https://gw.example.com/custom/ws')).toBe('wss://gw.example.com/custom/v1/desk');
  });
});
