import { describe, expect, it, vi } from 'vitest';
import { deliver } from './deliver.js';
import { ErrorCode, GatewayError } from './errors.js';

const connected = { whenConnected: vi.fn(async () => undefined) };
const cut = () => new GatewayError(ErrorCode.CONNECTION_CLOSED, 'cut');

describe('deliver', () => {
  it('sends again after a cut or a timeout, waiting for the connection each time', async () => {
    connected.whenConnected.mockClear();
    const send = vi.fn<() => Promise<string>>().mockRejectedValueOnce(cut()).mockRejectedValueOnce(new GatewayError(ErrorCode.TIMEOUT, 'slow')).mockResolvedValue('ok');
    await expect(deliver(connected, send, () => undefined)).resolves.toBe('ok');
    expect(send).toHaveBeenCalledTimes(3);
    expect(connected.whenConnected).toHaveBeenCalledTimes(3);
  });

  it('does not send when an earlier attempt went through after all', async () => {
    let stored: string | undefined;
    // Stored on the server, then cut before the answer came back.
    const send = vi.fn(async (): Promise<string> => {
      stored = 'stored';
      throw cut();
    });
    await expect(deliver(connected, send, () => stored)).resolves.toBe('stored');
    expect(send).toHaveBeenCalledTimes(1);
  });

  it("rethrows the server's answers at once, and a cut after the last attempt", async () => {
    const refused = vi.fn(async () => Promise.reject(new GatewayError(ErrorCode.RATE_LIMITED, 'slow down')));
    await expect(deliver(connected, refused, () => undefined)).rejects.toMatchObject({ code: 'RATE_LIMITED' });
    expect(refused).toHaveBeenCalledTimes(1);
    const alwaysCut = vi.fn(async () => Promise.reject(cut()));
    await expect(deliver(connected, alwaysCut, () => undefined, 3)).rejects.toMatchObject({ code: 'CONNECTION_CLOSED' });
    expect(alwaysCut).toHaveBeenCalledTimes(3);
  });

  it('rejects when the connection is gone for good, without sending', async () => {
    const send = vi.fn(async () => 'never');
    const gone = { whenConnected: () => Promise.reject(new GatewayError(ErrorCode.ROOM_CLOSED, 'disconnected')) };
    await expect(deliver(gone, send, () => undefined)).rejects.toMatchObject({ code: 'ROOM_CLOSED' });
    expect(send).not.toHaveBeenCalled();
  });
});
