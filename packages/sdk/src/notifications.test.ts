import { describe, expect, it, vi } from 'vitest';
import { applyNotification, type NotificationTargets } from './notifications.js';
import { SIGNALING } from './signaling/Socket.js';

/** A server frame as the socket reads it: decoded from JSON, then handed on. */
function deliver(json: unknown, to: NotificationTargets): void {
  const message = SIGNALING.decode(json).message;
  if (message?.$case === 'notification' && message.value.event) applyNotification(message.value.event, to);
}

describe('applyNotification', () => {
  it('hands a wanted simulcast layer to the publisher, and drops one no encoder has', () => {
    const layersWanted = vi.fn();
    const to = { layersWanted } as unknown as NotificationTargets;
    const frame = (value: unknown) => ({ notification: { videoLayersWanted: value } });
    deliver(frame({ participantId: 'PA_me', producerId: 'PR_cam', maxSpatialLayer: 1 }), to);
    deliver(frame({ participantId: 'PA_me', producerId: 'PR_cam', maxSpatialLayer: 0 }), to);
    deliver(frame({ participantId: 'PA_me', producerId: 'PR_cam', maxSpatialLayer: 'NaN' }), to);
    deliver(frame({ participantId: 'PA_me', producerId: 'PR_cam', maxSpatialLayer: 7 }), to);
    deliver(frame({ participantId: 'PA_me', producerId: 'PR_cam', maxSpatialLayer: 1.5 }), to);
    deliver(frame({ participantId: 'PA_me', maxSpatialLayer: 2 }), to);
    expect(layersWanted.mock.calls).toEqual([
      ['PR_cam', 1],
      ['PR_cam', 0],
    ]);
  });
});
