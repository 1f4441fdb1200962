// The footer's device controls: microphone, camera and screen share on and off.

import { showError } from './status.js';

/** How each source is turned on and off: the microphone and camera mute (they stay published), the screen share ends. */
const SET_ENABLED = {
  microphone: (room, on) => room.setMicrophoneEnabled(on),
  camera: (room, on) => room.setCameraEnabled(on),
  screen: (room, on) => room.setScreenShareEnabled(on),
};

/** Whether a source is on: published and not muted. */
function isOn(room, source) {
  const publication = room.localPublications.get(source);
  return !!publication && !publication.muted;
}

/** Buttons with data-toggle="camera|microphone|screen" turn that source on and off. */
export function bindToggles(room) {
  const buttons = [...document.querySelectorAll('[data-toggle]')];
  const refresh = () => {
    for (const button of buttons) {
      const source = button.dataset.toggle;
      const on = isOn(room, source);
      button.setAttribute('aria-pressed', String(on));
      button.disabled = button.dataset.busy === '1' || !room.grants.sources.includes(source);
      const label = button.querySelector('.label');
      if (label && button.dataset.on && button.dataset.off) label.textContent = on ? button.dataset.on : button.dataset.off;
    }
  };
  for (const button of buttons) {
    button.onclick = async () => {
      const source = button.dataset.toggle;
      button.dataset.busy = '1';
      refresh();
      try {
        await SET_ENABLED[source](room, !isOn(room, source));
      } catch (error) {
        // Cancelling the screen picker is not an error worth showing.
        if (!(source === 'screen' && error && error.code === 'DEVICE_PERMISSION_DENIED')) showError(error);
      }
      delete button.dataset.busy;
      refresh();
    };
  }
  for (const event of ['localTrackPublished', 'localTrackUnpublished', 'trackMuted', 'trackUnmuted', 'reconnected']) room.on(event, refresh);
  room.on('disconnected', () => buttons.forEach((b) => b.setAttribute('aria-pressed', 'false')));
  refresh();
}

/**
 * A button with data-flip-camera turns to the next camera: on a phone from the front to the rear
 * one (to show the agent a product) and back; on a computer with several, the next in the list.
 * Shown only when there is more than one camera.
 */
export function bindCameraFlip(room) {
  const button = document.querySelector('[data-flip-camera]');
  if (!button) return;
  const cameras = async () => (await Gateway.listDevices('videoinput').catch(() => [])).filter((d) => d.deviceId);
  const refresh = async () => {
    const published = isOn(room, 'camera');
    button.hidden = (await cameras()).length < 2;
    button.disabled = !published || button.dataset.busy === '1';
  };
  button.onclick = async () => {
    button.dataset.busy = '1';
    void refresh();
    try {
      const list = await cameras();
      const current = list.findIndex((d) => d.deviceId === room.activeDevice('videoinput'));
      await room.switchCamera({ deviceId: list[(current + 1) % list.length].deviceId });
    } catch (error) {
      showError(error);
    }
    delete button.dataset.busy;
    void refresh();
  };
  for (const event of ['localTrackPublished', 'localTrackUnpublished', 'trackMuted', 'trackUnmuted', 'devicesChanged']) room.on(event, () => void refresh());
  void refresh();
}

/**
 * On a phone the requests and the chat are sheets over the call, opened from the footer
 * (buttons with data-panel): one open at a time; a new request opens its sheet; a message
 * arriving while the chat is closed marks the chat button. On a wide screen both panels are
 * always shown and these buttons are not.
 */
export function bindPanels(room) {
  const buttons = [...document.querySelectorAll('[data-panel]')];
  const open = (panel) => {
    document.body.dataset.openPanel = panel || '';
    for (const button of buttons) {
      const on = button.dataset.panel === panel;
      button.setAttribute('aria-pressed', String(on));
      if (on) delete button.dataset.unread;
    }
  };
  for (const button of buttons) button.onclick = () => open(document.body.dataset.openPanel === button.dataset.panel ? '' : button.dataset.panel);
  room.on('smartAction', (action) => {
    if (action.state === 'requested' && action.participantId === room.localParticipant.id) open('requests');
  });
  room.on('message', (message) => {
    const chat = buttons.find((b) => b.dataset.panel === 'chat');
    if (chat && !message.isLocal && document.body.dataset.openPanel !== 'chat') chat.dataset.unread = '1';
  });
  room.on('disconnected', () => open(''));
  open('');
}
