import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, TenantAuth } from '@gateway/common';
import type { SignalingConfig } from '../config.js';
import type { RoomService } from '../rooms/RoomService.js';
import { createHttpHandler, type AttachmentRoutes } from './routes.js';

/** The SDK's URLs: /sdk.js (the latest, cached briefly) and /sdk/<version>/ (immutable), both readable from any origin. */
describe('SDK bundle routes', () => {
  let dir: string;
  let server: http.Server;
  let base: string;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'gateway-sdk-routes-'));
    mkdirSync(path.join(dir, 'cdn/0.2.0'), { recursive: true });
    mkdirSync(path.join(dir, 'public'));
    writeFileSync(path.join(dir, 'sdk.js'), 'var Gateway = "latest";\n');
    writeFileSync(path.join(dir, 'cdn/0.2.0/gateway.min.js'), 'var Gateway = "0.2.0";\n');
    writeFileSync(path.join(dir, 'cdn/0.2.0/gateway.min.js.map'), '{}');
    writeFileSync(path.join(dir, 'cdn/0.2.0/gateway.min.js.sri'), 'sha384-x\n');
    const config = { publicDir: path.join(dir, 'public'), sdkBundle: path.join(dir, 'sdk.js'), sdkVersionsDir: path.join(dir, 'cdn') } as unknown as SignalingConfig;
    server = http.createServer(createHttpHandler(config, createLogger('test', 'silent'), {} as AttachmentRoutes, { service: {} as RoomService, observe: () => undefined }, TenantAuth.configured([])));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves /sdk.js as the moving latest, cached briefly', async () => {
    const res = await fetch(`${base}/sdk.js`);
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('latest');
    expect(res.headers.get('cache-control')).toBe('public, max-age=300');
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
  });

  it('serves a version immutable, with its source map, to any origin', async () => {
    const res = await fetch(`${base}/sdk/0.2.0/gateway.min.js`);
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('0.2.0');
    expect(res.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    expect(res.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect((await fetch(`${base}/sdk/0.2.0/gateway.min.js.map`)).status).toBe(200);
  });

  it('answers 404 for an unknown version, another file or a path that is not a version', async () => {
    for (const pathname of ['/sdk/9.9.9/gateway.min.js', '/sdk/0.2.0/gateway.min.js.sri', '/sdk/latest/gateway.min.js', '/sdk/0.2.0-../gateway.min.js', '/sdk/0.2/gateway.min.js']) {
      const res = await fetch(`${base}${pathname}`);
      expect(res.status, pathname).toBe(404);
      expect(res.headers.get('cache-control'), pathname).not.toContain('immutable');
    }
  });
});

/** The demo pages at their pretty paths, and every module they load (the contact center's too). */
describe('demo pages', () => {
  let dir: string;
  let server: http.Server;
  let base: string;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'gateway-pages-'));
    writeFileSync(path.join(dir, 'sdk.js'), 'var Gateway = {};\n');
    const publicDir = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../public');
    const config = { publicDir, sdkBundle: path.join(dir, 'sdk.js'), sdkVersionsDir: dir } as unknown as SignalingConfig;
    server = http.createServer(createHttpHandler(config, createLogger('test', 'silent'), {} as AttachmentRoutes, { service: {} as RoomService, observe: () => undefined }, TenantAuth.configured([])));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves each page as HTML, and each script, stylesheet and module it loads', async () => {
    const seen = new Set<string>();
    const load = async (url: string): Promise<string> => {
      const res = await fetch(`${base}${url}`);
      expect(res.status, url).toBe(200);
      return res.text();
    };
    const module = async (url: string): Promise<void> => {
      if (seen.has(url)) return;
      seen.add(url);
      const source = await load(url);
      for (const [, relative] of source.matchAll(/from '(\.\/[\w-]+\.js)'/g)) await module(new URL(relative!, `${base}${url}`).pathname);
    };
    for (const page of ['/', '/agent', '/end-user', '/supervisor', '/admin']) {
      const res = await fetch(`${base}${page}`);
      expect(res.status, page).toBe(200);
      expect(res.headers.get('content-type'), page).toBe('text/html; charset=utf-8');
      const html = await res.text();
      for (const [, href] of html.matchAll(/(?:src|href)="(\/[\w./-]+)"/g)) if (!['/agent', '/end-user', '/supervisor', '/admin'].includes(href!)) await load(href!);
      for (const [, url] of html.matchAll(/from '(\/demo\/[\w-]+\.js)'/g)) await module(url!);
      for (const [, url] of html.matchAll(/<script type="module" src="(\/demo\/[\w-]+\.js)"/g)) await module(url!);
    }
    expect(seen).toContain('/demo/supervisor.js');
    expect(seen).toContain('/demo/adminForms.js');
    expect(seen).toContain('/demo/desk.js');
  });
});
