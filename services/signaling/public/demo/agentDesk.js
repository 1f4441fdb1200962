// The agent's desk on the agent console, opened with a desk token (#desk=<token>): the status
// switch, the ringing offer with its countdown, the contact in hand (transfer cold or warm, end;
// after a warm transfer, complete the hand-over) and the wrap-up form. Accepting joins the
// contact's room with the page's call UI.

import { channelLabel, hashParams, statusLabel } from './desk.js';
import { hideError, showError } from './status.js';

const $ = (id) => document.getElementById(id);

/**
 * Wires the desk panel; `call` is what demo/call.js's start() returned. Returns `publish()`, what
 * the page publishes in the room: the camera too for a video contact. Nothing without a desk token.
 */
export function bindAgentDesk(call) {
  let channel = 'voice';
  const publish = () => (channel === 'video' ? { camera: true, microphone: true } : { microphone: true });
  const token = hashParams().get('desk');
  const panel = $('desk');
  if (!token || !panel) return { publish };
  panel.hidden = false;
  document.body.dataset.desk = '1';
  let desk;
  /** The contact whose room the page is in (a contact transferred warm too, until the hand-over is complete). */
  let inRoom;
  let countdown;

  async function run(button, action) {
    if (button) button.disabled = true;
    hideError();
    try {
      await action();
    } catch (error) {
      showError(error);
    } finally {
      if (button) button.disabled = false;
    }
  }

  // ---- status
  function renderStatus(state) {
    // Available with a contact in hand is busy (as routing counts it; accepting tells no new status).
    const status = state.status === 'available' && state.contacts.length > 0 ? 'busy' : state.status;
    const pill = $('agent-status');
    pill.dataset.status = status;
    pill.textContent = statusLabel(status) + (status === 'away' && state.reason ? ` · ${state.reason}` : '');
    for (const button of panel.querySelectorAll('[data-set-status]')) button.setAttribute('aria-pressed', String(button.dataset.setStatus === status));
    renderContact(state);
    renderWrapUp(state);
    if (!state.offer) hideOffer();
  }
  for (const button of panel.querySelectorAll('[data-set-status]')) {
    button.onclick = () => run(button, () => desk.setStatus(button.dataset.setStatus, button.dataset.setStatus === 'away' ? $('away-reason').value.trim() : ''));
  }

  // ---- the offer
  function showOffer(offer) {
    const card = $('offer');
    card.hidden = false;
    card.dataset.contact = offer.contactId;
    $('offer-queue').textContent = offer.queueId;
    $('offer-channel').textContent = channelLabel(offer.channel);
    $('offer-name').textContent = offer.name || 'A customer';
    $('offer-transfer').hidden = !offer.transferredBy;
    $('offer-transfer').textContent = offer.transferredBy ? `Transferred by ${offer.transferredBy}` : '';
    $('offer-context').replaceChildren(
      ...Object.entries(offer.context).flatMap(([key, value]) => {
        const dt = document.createElement('dt');
        dt.textContent = key;
        const dd = document.createElement('dd');
        dd.textContent = value;
        dd.dataset.field = key;
        return [dt, dd];
      }),
    );
    clearInterval(countdown);
    const tick = () => ($('offer-countdown').textContent = `${Math.max(0, Math.ceil((offer.expiresAtMs - Date.now()) / 1000))} s`);
    tick();
    countdown = setInterval(tick, 250);
    $('offer-accept').onclick = () => run($('offer-accept'), () => accept(offer));
    $('offer-decline').onclick = () =>
      run($('offer-decline'), async () => {
        await desk.decline(offer.contactId);
        hideOffer(offer.contactId);
      });
  }
  function hideOffer(contactId) {
    const card = $('offer');
    if (contactId && card.dataset.contact !== contactId) return;
    card.hidden = true;
    delete card.dataset.contact;
    clearInterval(countdown);
  }
  async function accept(offer) {
    const join = await desk.accept(offer.contactId);
    hideOffer(offer.contactId);
    renderStatus(desk.state);
    await enter(join);
  }
  /** Into a contact's room (accepted, or brought in by a warm transfer). */
  async function enter(join) {
    inRoom = join.contact.contactId;
    channel = join.contact.channel;
    renderContact(desk.state);
    if (window.room && document.body.dataset.state === 'connected') await window.room.leave();
    await call.join(join.token);
  }

  // ---- the contact in hand
  function renderContact(state) {
    const contact = state.contacts.find((c) => c.contactId === inRoom) || state.contacts[0];
    $('contact').hidden = !contact;
    if (!contact) return;
    $('contact').dataset.contact = contact.contactId;
    $('contact-queue').textContent = contact.queueId;
    $('contact-channel').textContent = channelLabel(contact.channel);
    // Transferred warm: no longer this agent's to transfer or end, only to leave once handed over.
    const handingOver = state.handingOverContactIds.includes(contact.contactId);
    $('transfer-form').hidden = handingOver;
    $('contact-end').hidden = handingOver;
    $('handover').hidden = !handingOver;
    $('handover-status').textContent = !handingOver ? '' : contact.phase === 'connected' ? `Handing over to ${contact.agentId}` : 'Waiting for the next agent…';
  }
  $('transfer-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const contactId = $('contact').dataset.contact;
    const target = $('transfer-target').value.trim();
    if (!contactId || !target) return;
    const to = $('transfer-kind').value === 'agent' ? { agentId: target } : { queue: target };
    const isWarm = $('transfer-warm').checked;
    run($('transfer-submit'), () => desk.transfer(contactId, to, { warm: isWarm }));
  });
  $('handover-complete').onclick = () => run($('handover-complete'), () => desk.completeTransfer($('contact').dataset.contact));
  $('contact-end').onclick = () => run($('contact-end'), () => desk.end($('contact').dataset.contact));

  // ---- wrap-up: after a contact ends, until the agent says what came of it
  let ended = '';
  function renderWrapUp(state) {
    const form = $('wrapup');
    const contactId = state.wrapUpContactIds[0] || (state.status === 'after_contact_work' ? ended : '');
    if (!contactId) {
      form.hidden = true;
      delete form.dataset.contact;
      return;
    }
    if (form.dataset.contact === contactId) return;
    form.reset();
    form.dataset.contact = contactId;
    form.hidden = false;
  }
  $('wrapup').addEventListener('submit', (event) => {
    event.preventDefault();
    const form = $('wrapup');
    const next = $('wrapup-next').value;
    run($('wrapup-submit'), () =>
      desk.wrapUp(form.dataset.contact, {
        disposition: $('wrapup-disposition').value.trim(),
        notes: $('wrapup-notes').value.trim(),
        next,
        reason: next === 'away' ? $('wrapup-reason').value.trim() : '',
      }),
    );
  });

  async function signIn() {
    $('agent-status').textContent = 'Signing in…';
    try {
      // Gateway: the SDK bundle (/sdk.js), loaded before the page's modules.
      desk = await Gateway.agent({ url: location.origin, token });
    } catch (error) {
      $('agent-status').textContent = 'Not signed in';
      showError(error);
      return;
    }
    window.desk = desk;
    panel.dataset.agent = desk.agentId;
    desk.on('status', renderStatus);
    desk.on('offer', showOffer);
    desk.on('offerWithdrawn', ({ contactId }) => hideOffer(contactId));
    desk.on('connected', (join) =>
      run(undefined, () => {
        renderStatus(desk.state);
        return enter(join);
      }),
    );
    desk.on('contactEnded', (contact) => {
      ended = contact.contactId;
      renderStatus(desk.state);
      // Over, or handed over (cold, or warm and complete): out of its room.
      if (contact.contactId === inRoom) {
        inRoom = undefined;
        Promise.resolve(window.room?.leave()).catch(() => undefined);
      }
    });
    desk.on('error', (error) => {
      $('agent-status').textContent = 'Signed out';
      showError(error);
    });
  }
  signIn();
  return { publish };
}
