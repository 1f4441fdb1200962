// Smart Actions: agents ask the customer for a photo, a screenshot or a device verification.

import { showError } from './status.js';

const ACTION_LABELS = { photo: 'Photo', screenshot: 'Screenshot', verification: 'Device verification' };
const ACTION_STATES = { requested: 'Requested', completed: 'Completed', declined: 'Declined', failed: 'Failed' };

function secondsTime(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** What a Smart Action failure says, for either side. */
function actionErrorText(error) {
  switch (error?.code) {
    case 'MESSAGE_TOO_LARGE':
      return 'This image is too large. Please choose a smaller one.';
    case 'UNSUPPORTED_CONTENT':
      return 'This file is not a JPEG, PNG or WebP image.';
    case 'INVALID_STATE':
      return 'This request was already answered.';
    case 'PERMISSION_DENIED':
      return `Not allowed: ${error?.message || 'permission denied'}`;
    case 'UNSUPPORTED':
      return `This browser cannot do that here: ${error?.message || ''}`;
    default:
      return error?.message || String(error);
  }
}

function textElement(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  el.textContent = text;
  return el;
}

function actionButton(testid, label, primary) {
  const button = Object.assign(document.createElement('button'), { type: 'button', textContent: label });
  button.dataset.testid = testid;
  if (primary) button.className = 'primary';
  return button;
}

/**
 * Smart Actions, on both pages: the room's actions as a list (one
 * `.smart-action[data-action-id][data-kind][data-state]` each, updated as their state changes).
 * Agents get buttons to ask for a photo, a screenshot or a device verification, and see the
 * photos and screenshots (through short-lived attachment URLs) and the verification results.
 * The end user asked gets a prompt in the action's entry: a file to send, a screenshot to
 * share or a verification with this device, and Decline; and a "Register this device" button.
 * `elements` overrides the defaults (#smart-actions, #smart-action-error, #register-device,
 * #register-device-status, the `[data-request-action]` buttons). Text is only ever inserted as text.
 */
export function bindSmartActions(room, elements) {
  const el = Object.assign(
    {
      list: document.getElementById('smart-actions'),
      error: document.getElementById('smart-action-error'),
      register: document.getElementById('register-device'),
      registerStatus: document.getElementById('register-device-status'),
      requestButtons: [...document.querySelectorAll('[data-request-action]')],
    },
    elements,
  );
  const isAgent = room.localParticipant.role === 'agent';
  /** actionId -> its element */
  const nodes = new Map();

  function showActionError(error) {
    if (!el.error) return showError(error);
    el.error.textContent = actionErrorText(error);
    el.error.dataset.code = error?.code || '';
    el.error.hidden = false;
  }

  function clearActionError() {
    if (!el.error) return;
    el.error.hidden = true;
    el.error.textContent = '';
    delete el.error.dataset.code;
  }

  /** Runs an answer from a card: its buttons are disabled meanwhile, and a failure shows in the card. */
  async function busy(li, work) {
    const controls = [...li.querySelectorAll('button, input')];
    controls.forEach((c) => (c.disabled = true));
    li.dataset.busy = '1';
    const error = li.querySelector('.smart-action-error');
    error.hidden = true;
    try {
      await work();
    } catch (e) {
      error.textContent = actionErrorText(e);
      error.dataset.code = e?.code || '';
      error.hidden = false;
      // Still open: try again (Send needs a file chosen).
      const file = li.querySelector('input[type=file]');
      controls.forEach((c) => (c.disabled = c.dataset.testid === 'smart-action-send' && !file?.files.length));
    } finally {
      delete li.dataset.busy;
    }
  }

  /** The end user's screenshot: the screen share if on, else a one-off capture of what they pick. */
  async function shareScreenshot(actionId) {
    if (room.localTracks.has('screen') || !navigator.mediaDevices || !navigator.mediaDevices.getDisplayMedia) return room.sendScreenshot(actionId);
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    const track = stream.getVideoTracks()[0];
    try {
      return await room.sendScreenshot(actionId, track);
    } finally {
      stream.getTracks().forEach((t) => t.stop());
    }
  }

  /** The prompt of a request asked of us. */
  function prompt(li, action) {
    const controls = document.createElement('div');
    controls.className = 'smart-action-controls';
    if (action.kind === 'photo') {
      const file = Object.assign(document.createElement('input'), { type: 'file', accept: 'image/*' });
      file.setAttribute('capture', 'environment');
      file.dataset.testid = 'smart-action-file';
      file.setAttribute('aria-label', 'Photo to send');
      const send = actionButton('smart-action-send', 'Send', true);
      send.disabled = true;
      file.onchange = () => (send.disabled = !file.files.length);
      send.onclick = () => busy(li, () => room.sendPhoto(action.actionId, file.files[0]));
      controls.append(file, send);
    } else if (action.kind === 'screenshot') {
      const share = actionButton('smart-action-screenshot', 'Share screenshot', true);
      share.onclick = () => busy(li, () => shareScreenshot(action.actionId));
      controls.append(share);
    } else if (action.kind === 'verification') {
      const verify = actionButton('smart-action-verify', 'Verify with this device', true);
      verify.onclick = () => busy(li, () => room.verifyDevice(action.actionId));
      controls.append(verify);
    }
    const decline = actionButton('smart-action-decline', 'Decline');
    decline.onclick = () => busy(li, () => room.declineSmartAction(action.actionId));
    controls.append(decline);
    li.append(controls);
  }

  /** What came of an action: the picture (agents), the verification result, or why not. */
  function outcome(li, action) {
    if (action.state === 'completed' && action.kind === 'verification') {
      const result = textElement('div', 'smart-action-result', `${action.verified ? 'verified' : 'not verified'} · ${secondsTime(action.completedAtMs)}`);
      result.dataset.testid = 'smart-action-result';
      result.dataset.verified = String(action.verified);
      result.classList.add(action.verified ? 'ok' : 'bad');
      li.append(result);
      if (!action.verified && action.reason) li.append(textElement('div', 'smart-action-reason', action.reason));
    } else if (action.state === 'completed' && action.artifactId) {
      if (!isAgent) return li.append(textElement('div', 'smart-action-reason', 'Sent to the agent.'));
      const img = document.createElement('img');
      img.className = 'smart-action-image';
      img.dataset.testid = 'smart-action-image';
      img.alt = `${ACTION_LABELS[action.kind] || action.kind} from ${action.externalId || 'the customer'}`;
      li.append(img);
      // The URL is short-lived: loaded once here; a click opens a fresh one.
      room.attachmentUrl(action.artifactId).then(
        (url) => (img.src = url),
        (error) => li.append(textElement('div', 'smart-action-reason', actionErrorText(error))),
      );
      img.onclick = () => room.attachmentUrl(action.artifactId).then((url) => window.open(url, '_blank', 'noopener'), showActionError);
    } else if (action.state === 'requested') {
      if (isAgent) li.append(textElement('div', 'smart-action-reason', 'Waiting for the customer…'));
    } else if (action.reason) {
      li.append(textElement('div', 'smart-action-reason', action.reason));
    }
  }

  function actionElement(action) {
    const li = document.createElement('li');
    li.className = 'smart-action';
    li.dataset.testid = 'smart-action';
    li.dataset.actionId = action.actionId;
    li.dataset.kind = action.kind;
    li.dataset.state = action.state;
    const head = document.createElement('div');
    head.className = 'smart-action-head';
    const time = textElement('time', '', secondsTime(action.requestedAtMs));
    time.dateTime = new Date(action.requestedAtMs).toISOString();
    const state = textElement('span', 'smart-action-state', ACTION_STATES[action.state] || action.state);
    state.dataset.testid = 'smart-action-state';
    head.append(textElement('span', 'smart-action-kind', ACTION_LABELS[action.kind] || action.kind), state, time);
    li.append(head);
    const askedMe = action.participantId === room.localParticipant.id;
    if (!isAgent && askedMe && action.state === 'requested') prompt(li, action);
    else outcome(li, action);
    const error = textElement('p', 'smart-action-error', '');
    error.hidden = true;
    li.append(error);
    return li;
  }

  function render(action) {
    // End users see what was asked of them; agents see everything.
    if (!isAgent && action.participantId !== room.localParticipant.id && !nodes.has(action.actionId)) return;
    const li = actionElement(action);
    const old = nodes.get(action.actionId);
    nodes.set(action.actionId, li);
    if (old) return old.replaceWith(li);
    el.list.append(li);
    el.list.scrollTop = el.list.scrollHeight;
    if (!isAgent && action.state === 'requested') li.scrollIntoView({ block: 'nearest' });
  }

  for (const button of el.requestButtons) {
    button.hidden = !isAgent;
    button.onclick = async () => {
      clearActionError();
      button.disabled = true;
      try {
        await room.requestSmartAction(button.dataset.requestAction);
      } catch (error) {
        showActionError(error);
      }
      button.disabled = false;
    };
  }

  if (el.register) {
    el.register.hidden = isAgent;
    el.register.onclick = async () => {
      el.register.disabled = true;
      const status = el.registerStatus;
      if (status) {
        status.textContent = 'Follow your browser\u2019s prompt…';
        delete status.dataset.code;
      }
      try {
        const credentialId = await room.registerDeviceKey();
        if (status) {
          status.textContent = 'This device is registered.';
          status.dataset.credentialId = credentialId;
        }
        el.register.textContent = 'Registered';
      } catch (error) {
        if (status) {
          status.textContent = error && error.code === 'INVALID_STATE' ? 'This device is already registered.' : actionErrorText(error);
          status.dataset.code = error?.code || '';
        }
        el.register.disabled = false;
      }
    };
  }

  el.list.replaceChildren();
  clearActionError();
  for (const action of room.smartActions) render(action);
  room.on('smartAction', render);
  room.on('disconnected', () => {
    el.requestButtons.forEach((b) => (b.disabled = true));
    if (el.register) el.register.disabled = true;
    el.list.querySelectorAll('.smart-action-controls button, .smart-action-controls input').forEach((c) => (c.disabled = true));
  });
}
