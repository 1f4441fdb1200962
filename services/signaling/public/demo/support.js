// The end user's "Talk to support" flow, on the end-user page opened with a desk token
// (#desk=<token>&queue=billing&channel=video, context fields as context.<field>=<value>): asks
// the queue for an agent, shows the place in the queue as it changes, and joins the room with
// the page's call UI once an agent takes the contact.

import { channelLabel, hashParams, waitText } from './desk.js';
import { hideError, showError } from './status.js';

const ENDED = {
  completed: 'The call has ended. Thank you for contacting us.',
  abandoned: 'You left the queue.',
  expired: 'Your request has expired. You can ask again.',
};

/** Wires the support panel; `call` is what demo/call.js's start() returned. Nothing without a desk token. */
export function bindSupport(call) {
  const params = hashParams();
  const token = params.get('desk');
  const panel = document.getElementById('support');
  if (!token || !panel) return;
  panel.hidden = false;
  document.body.dataset.desk = '1';
  const form = document.getElementById('support-form');
  const queueInput = document.getElementById('support-queue');
  const channelInput = document.getElementById('support-channel');
  const status = document.getElementById('support-status');
  const leave = document.getElementById('support-leave');
  if (params.get('queue')) queueInput.value = params.get('queue');
  if (params.get('channel')) channelInput.value = params.get('channel');
  const context = {};
  for (const [key, value] of params) if (key.startsWith('context.')) context[key.slice('context.'.length)] = value;
  let request;
  const inCall = () => !!window.room && ['connected', 'reconnecting'].includes(document.body.dataset.state);

  /** The panel in a phase: its text, and which of the form and the leave button show. */
  function show(phase, text, position = 0) {
    panel.dataset.phase = phase;
    panel.dataset.position = String(position);
    status.textContent = text;
    form.hidden = !['idle', 'ended'].includes(phase);
    leave.hidden = !['queued', 'offered', 'callback'].includes(phase);
  }

  /**
   * A new agent came into the call after a hand-over. The request says `connected` again by its
   * phase only (the room is the same, so no new `connected` event comes): read it for a while.
   */
  function handedOver(triesLeft = 25) {
    if (!request || !['queued', 'offered'].includes(panel.dataset.phase)) return;
    if (request.phase === 'connected') return show('connected', 'An agent is with you.');
    if (triesLeft > 0) setTimeout(() => handedOver(triesLeft - 1), 200);
  }

  async function ask() {
    if (request) return;
    const queue = queueInput.value.trim();
    const channel = channelInput.value;
    if (!queue) return;
    hideError();
    show('requesting', `Asking for ${channelLabel(channel).toLowerCase()} support…`);
    let current;
    try {
      // Gateway: the SDK bundle (/sdk.js), loaded before the page's modules.
      current = await Gateway.requestSupport({ url: location.origin, token, queue, channel, context });
    } catch (error) {
      show('idle', '');
      showError(error);
      return;
    }
    request = current;
    current.on('queued', ({ position, estimatedWaitSeconds }) => {
      // Queued again while in the call: the agent hands the contact over, and the call goes on.
      if (inCall()) return show('queued', 'You are being transferred to another agent…', position);
      const wait = waitText(estimatedWaitSeconds);
      show('queued', `You are number ${position} in the queue${wait ? `, ${wait}` : ''}.`, position);
    });
    current.on('offered', () => show('offered', inCall() ? 'You are being transferred to another agent…' : 'An agent is being found for you…'));
    current.on('callback', () => show('callback', 'No agent is free right now: we will call you back here. Keep this page open.'));
    current.on('connected', async ({ room, token: roomToken }) => {
      show('connected', 'An agent is with you.');
      // After a transfer the new agent comes into the same room.
      if (inCall() && window.room.name === room) return;
      const joined = await call.join(roomToken);
      joined?.on('participantJoined', (participant) => participant.role === 'agent' && handedOver());
    });
    current.on('ended', ({ reason }) => {
      request = undefined;
      show('ended', ENDED[reason] || 'The request has ended.');
      Promise.resolve(window.room?.leave()).catch(() => undefined);
    });
    current.on('error', (error) => {
      request = undefined;
      show('idle', '');
      showError(error);
    });
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    ask();
  });
  leave.onclick = async () => {
    leave.disabled = true;
    await request?.leave().catch(showError);
    leave.disabled = false;
  };
  show('idle', '');
  if (params.get('queue') && params.get('channel')) ask();
}
