import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode } from '@gateway/common';
import { PostgresDestination, postgresConfigSchema } from './postgres.js';

/** A PostgreSQL backend message: a type byte, its length, its body. */
function message(type: string, body: Buffer): Buffer {
  const header = Buffer.alloc(5);
  header.write(type, 0, 'latin1');
  header.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([header, body]);
}

const authenticationOk = message('R', Buffer.from([0, 0, 0, 0]));
const readyForQuery = message('Z', Buffer.from('I', 'latin1'));
/** What pg_terminate_backend makes the server send: FATAL 57P01. */
const terminated = message(
  'E',
  Buffer.concat([
    ...[
      ['S', 'FATAL'],
      ['V', 'FATAL'],
      ['C', '57P01'],
      ['M', 'terminating connection due to administrator command'],
    ].map(([field, value]) => Buffer.from(`${field}${value}\0`, 'latin1')),
    Buffer.from([0]),
  ]),
);

describe('PostgresDestination against a server that ends connections', () => {
  const servers: net.Server[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
  });

  /** A server that accepts the start-up and ends the connection in the same packet as it says it is ready. */
  async function terminatingServer(): Promise<number> {
    const server = net.createServer((socket) => {
      socket.on('error', () => undefined);
      socket.once('data', () => socket.end(Buffer.concat([authenticationOk, readyForQuery, terminated])));
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return (server.address() as net.AddressInfo).port;
  }

  it("reports the failure as the delivery's, and no error escapes to the process", async () => {
    const port = await terminatingServer();
    const escaped: unknown[] = [];
    const onUncaught = (error: unknown) => escaped.push(error);
    process.on('uncaughtException', onUncaught);
    const destination = new PostgresDestination(
      postgresConfigSchema.parse({ host: '127.0.0.1', port, database: 'customer_crm', user: 'customer', ssl: 'disable' }),
      { password: 'customer-password' },
      { allowPrivate: true },
      5_000,
    );
    try {
      for (let attempt = 0; attempt < 3; attempt++) {
        await expect(destination.test()).rejects.toMatchObject({ code: ErrorCode.DESTINATION_FAILED });
      }
      // Give any late 'error' event its turn.
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(escaped).toEqual([]);
    } finally {
      process.off('uncaughtException', onUncaught);
      await destination.close();
    }
  });
});
