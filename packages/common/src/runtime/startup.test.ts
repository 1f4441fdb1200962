import { describe, expect, it } from 'vitest';
import { Startup } from './startup.js';

describe('Startup', () => {
  it('closes what a failed start opened, latest first, and throws the start error', async () => {
    const closed: string[] = [];
    const failure = new Error('the third step failed');
    await expect(
      Startup.run(async (startup) => {
        startup.opened('nats', (name) => closed.push(name));
        startup.opened('workers', async (name) => {
          closed.push(name);
          throw new Error('closing the workers failed too');
        });
        startup.opened('port', (name) => closed.push(name));
        throw failure;
      }),
    ).rejects.toBe(failure);
    expect(closed).toEqual(['port', 'workers', 'nats']);
  });

  it('leaves everything open when the start succeeds', async () => {
    const closed: string[] = [];
    const value = await Startup.run(async (startup) => {
      startup.opened('nats', (name) => closed.push(name));
      return 42;
    });
    expect(value).toBe(42);
    expect(closed).toEqual([]);
  });
});
