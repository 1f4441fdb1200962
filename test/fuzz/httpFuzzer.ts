import net from 'node:net';
import { splicedResumeTokens, type Rng } from './generators.js';
import { version as sdkVersion } from '../../packages/sdk/package.json';
import type { FuzzStats, FuzzTarget } from './fuzzTypes.js';

const methods = ['GET', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'HEAD', 'PATCH', 'TRACE', 'CONNECT', 'PROPFIND', 'G\u00e9T', ''];

/**
 * HTTP requests to every route of signaling (and arbitrary paths), written byte by byte onto a
 * socket so that anything a client can send is sent: bad methods, targets, headers, lengths and
 * bodies, and a few slow senders. A forged credential that is accepted is a failure.
 */
export async function fuzzHttp(rng: Rng, target: FuzzTarget, stats: FuzzStats, count: number, resumeTokens: string[]): Promise<void> {
  const basic = (key: string, secret: string) => `Basic ${Buffer.from(`${key}:${secret}`).toString('base64')}`;
  const forgedBasic = [
    basic(target.tenant.apiKey, `${target.tenant.apiSecret}x`),
    basic(target.tenant.apiKey, target.other.apiSecret),
    basic(target.other.apiKey, target.tenant.apiSecret),
    basic(`${target.tenant.apiKey}x`, target.tenant.apiSecret),
    basic(target.tenant.apiKey, ''),
    `Basic ${'A'.repeat(rng.int(20_000))}`,
    'Basic',
    `Bearer ${target.tenant.apiSecret}`,
  ];
  const bearer = () =>
    `Bearer ${rng.chance(0.5) && resumeTokens.length > 1 ? (rng.pick(splicedResumeTokens(rng.pick(resumeTokens), rng.pick(resumeTokens))) ?? 'x') : rng.pick(['', 'x', 'a.b.c.d', '...', '\u00ff'])}`;
  // Every request of the batch is drawn first, in order (so a seed gives the same requests), then
  // sent from a few clients at once, each waiting for its answer.
  const specs = Array.from({ length: count }, () => {
    const base = new URL(rng.pick(target.httpUrls));
    const route = rng.int(8);
    const id = rng.pick(['SA_x', 'AT_x', '..', '%2e%2e', 'a'.repeat(65), '\u0000', '%00', 'SA_%E0%A4%A']);
    let method = rng.pick(methods);
    let path = rng.pick([
      '/',
      '/sdk.js',
      '/sdk.js.map',
      // The versioned bundle: this build's, an unknown one, and names that try to leave its folder.
      `/sdk/${rng.pick([sdkVersion, '9.9.9', '..', '%2e%2e', `${sdkVersion}-..`, 'latest', sdkVersion.replace(/\./g, '%2e')])}/${rng.pick(['gateway.min.js', 'gateway.min.js.map', 'gateway.min.js.sri', '../../package.json', '%2e%2e/%2e%2e/package.json'])}`,
      '/agent',
      '/end-user',
      '/supervisor',
      '/index.html',
      '/app.css',
      '/ws',
      '/v1/tokens',
      '/v1/rooms',
      `/v1/rooms/${rng.pick(['r', '..', '%00', 'a'.repeat(65)])}`,
      `/v1/rooms/r/participants/${id}`,
      `/v1/rooms/r/participants/${id}/tracks/${id}/mute`,
      `/v1/rooms/r/recording`,
      `/v1/rooms/r/data`,
      `/v1/smart-actions/${id}/upload`,
      `/v1/artifacts/${id}?token=${rng.pick(['', 'x.y.z', 'eyJhbGciOiJub25lIn0.eyJ0bnQiOiJkZW1vIiwiYXJ0IjoiQVRfeCJ9.'])}`,
    ]);
    if (route === 0)
      path = rng.pick([
        '//a:99999/',
        'http://[',
        '*',
        '/../../../../etc/passwd',
        '/%2e%2e/%2e%2e/etc/passwd',
        `/${'a/'.repeat(3_000)}`,
        `/?${'q='.repeat(5_000)}`,
        '/\u00e9',
        '//sdk.js',
        '/%',
        '/%ZZ',
      ]);
    const headers: string[] = [`Host: ${base.host}`];
    let body: Buffer = Buffer.alloc(0);
    let credential: 'forged-basic' | 'bearer' | 'none' = 'none';
    if (path === '/v1/tokens' || path.startsWith('/v1/rooms') || rng.chance(0.2)) {
      // The room API's routes take every method; the others mostly get their own.
      if (!path.startsWith('/v1/rooms')) method = rng.chance(0.8) ? 'POST' : method;
      headers.push(`Authorization: ${rng.pick(forgedBasic)}`);
      credential = 'forged-basic';
      body = Buffer.from(
        rng.pick([
          JSON.stringify({ room: 'r', identity: 'x', role: 'agent', canRecord: true }),
          '{',
          'null',
          `{"room":${'['.repeat(5_000)}}`,
          JSON.stringify({ room: '../x', identity: '\u0000', role: 'root' }),
        ]),
      );
    } else if (path.includes('/upload')) {
      method = rng.chance(0.8) ? 'POST' : method;
      headers.push(`Authorization: ${bearer()}`);
      credential = 'bearer';
      body = rng.bytes(rng.pick([0, 10, 5_000, 200_000]));
    }
    if (rng.chance(0.2))
      headers.push(
        rng.pick([
          'Content-Length: -1',
          'Content-Length: 99999999999',
          'Content-Length: abc',
          'Transfer-Encoding: chunked',
          'Transfer-Encoding: gzip, chunked',
          'Expect: 100-continue',
          `X-Long: ${'x'.repeat(rng.pick([100, 20_000, 100_000]))}`,
          'Bad Header: x',
          'Connection: upgrade',
          'Upgrade: websocket',
          '\u0000: x',
        ]),
      );
    else headers.push(`Content-Length: ${body.length}`);
    const request = Buffer.concat([Buffer.from(`${method} ${path} HTTP/1.1\r\n${headers.join('\r\n')}\r\n\r\n`, 'latin1'), body]);
    return { port: Number(base.port), path, credential, authorization: headers.find((h) => h.startsWith('Authorization')), request, slow: rng.chance(0.01) };
  });
  const slow: Promise<void>[] = [];
  const send = async (spec: (typeof specs)[number]) => {
    if (spec.slow && slow.length < 4) {
      // Sent a byte at a time; counted as sent, its answer (the server's timeout) is not awaited.
      stats.httpRequests++;
      stats.http.slow = (stats.http.slow ?? 0) + 1;
      slow.push(slowSend(spec.port, spec.request));
      return;
    }
    const answer = await rawRequest(spec.port, spec.request);
    stats.httpRequests++;
    const status = /^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 'none';
    stats.http[status] = (stats.http[status] ?? 0) + 1;
    if (spec.credential === 'forged-basic' && spec.path === '/v1/tokens' && status === '200') stats.forgedAccepted.push(`POST /v1/tokens with ${spec.authorization?.slice(0, 40)}`);
    if (spec.credential === 'forged-basic' && spec.path.startsWith('/v1/rooms') && status.startsWith('2'))
      stats.forgedAccepted.push(`${spec.path.slice(0, 60)} with ${spec.authorization?.slice(0, 40)}`);
    if (spec.credential === 'bearer' && status === '201') stats.forgedAccepted.push(`upload with a forged bearer token on ${spec.path}`);
    if (spec.path.startsWith('/v1/artifacts/') && status === '200') stats.forgedAccepted.push(`artifact download with a forged URL token: ${spec.path.slice(0, 80)}`);
  };
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < specs.length) await send(specs[next++]!);
    }),
  );
  await Promise.all(slow);
}

function rawRequest(port: number, request: Buffer, timeoutMs = 2_000): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let answer = '';
    const done = () => {
      socket.destroy();
      resolve(answer);
    };
    socket.on('data', (chunk) => {
      answer += chunk.toString('latin1');
      // One answer is enough (keep-alive would keep the socket open).
      if (/\r\n\r\n/.test(answer)) setTimeout(done, 20);
    });
    socket.on('error', done);
    socket.on('close', done);
    socket.setTimeout(timeoutMs, done);
    socket.write(request);
  });
}

/** A client that sends its request a few bytes at a time, far slower than any real one. */
function slowSend(port: number, request: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let offset = 0;
    const timer = setInterval(() => {
      if (socket.destroyed || offset >= request.length) {
        clearInterval(timer);
        socket.destroy();
        resolve();
        return;
      }
      socket.write(request.subarray(offset, offset + 2));
      offset += 2;
    }, 250);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearInterval(timer);
      resolve();
    });
    // Nobody waits longer than the server's own timeouts.
    setTimeout(() => socket.destroy(), 15_000).unref();
  });
}
