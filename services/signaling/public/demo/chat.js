// The chat panel.

import { roleLabel } from './labels.js';

/** What the chat panel says for a failed send or redaction. */
function chatErrorText(error) {
  switch (error?.code) {
    case 'MESSAGE_TOO_LARGE':
      return 'This message is too long to send. Please shorten it.';
    case 'RATE_LIMITED': {
      const seconds = Math.max(1, Math.ceil((error.retryAfterMs || 1000) / 1000));
      return `You are sending messages too quickly. Try again in ${seconds} s.`;
    }
    case 'PERMISSION_DENIED':
      return 'You are not allowed to do that.';
    case 'NOT_FOUND':
      return 'That message no longer exists.';
    case 'ROOM_CLOSED':
      return 'You are no longer in the call.';
    default:
      return error?.message || String(error);
  }
}

/** Message text with the server's placeholders ([CARD], [SSN], [PHONE], [EMAIL]) set apart. Never HTML. */
function chatText(text) {
  const out = document.createDocumentFragment();
  for (const part of text.split(/(\[(?:CARD|SSN|PHONE|EMAIL)\])/)) {
    if (!part) continue;
    if (/^\[(CARD|SSN|PHONE|EMAIL)\]$/.test(part)) {
      const chip = document.createElement('span');
      chip.className = 'pii';
      chip.title = 'Hidden for privacy';
      chip.textContent = part;
      out.append(chip);
    } else {
      out.append(part);
    }
  }
  return out;
}

function clockTime(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/**
 * The chat panel: the room's messages (history and live, one `.chat-message[data-message-id]`
 * each, in the room's order, our own on the right), an input that sends on Enter, failures
 * shown under the log, and for agents a Redact action on the customer's messages. `elements`
 * overrides the default ids (#chat-log, #chat-form, #chat-input, #chat-send, #chat-error);
 * `options.canRedact(message)` overrides who gets the Redact action.
 */
export function bindChat(room, elements, options) {
  const el = Object.assign(
    {
      log: document.getElementById('chat-log'),
      form: document.getElementById('chat-form'),
      input: document.getElementById('chat-input'),
      send: document.getElementById('chat-send'),
      error: document.getElementById('chat-error'),
    },
    elements,
  );
  const canRedact = options?.canRedact || ((m) => room.localParticipant.role === 'agent' && m.role === 'end_user' && !m.redacted);
  /** messageId -> its element */
  const nodes = new Map();
  let sending = false;
  let blockedUntil = 0;
  let unblock;

  function showChatError(error) {
    el.error.textContent = chatErrorText(error);
    el.error.dataset.code = error?.code || '';
    el.error.hidden = false;
  }

  function clearChatError() {
    el.error.hidden = true;
    el.error.textContent = '';
    delete el.error.dataset.code;
  }

  function messageElement(message) {
    const li = document.createElement('li');
    li.className = 'chat-message';
    li.classList.toggle('own', message.isLocal);
    li.classList.toggle('redacted', message.redacted);
    li.dataset.messageId = message.messageId;
    li.dataset.role = message.role;
    li.dataset.testid = 'chat-message';
    if (message.redacted) li.dataset.redacted = '1';

    const meta = document.createElement('div');
    meta.className = 'chat-meta';
    const sender = document.createElement('span');
    sender.className = 'chat-sender';
    sender.textContent = message.isLocal ? 'You' : message.identity;
    const role = document.createElement('span');
    role.className = 'chat-role';
    role.textContent = message.isLocal ? '' : roleLabel(message.role);
    const time = document.createElement('time');
    time.dateTime = new Date(message.sentAtMs).toISOString();
    time.title = new Date(message.sentAtMs).toLocaleString();
    time.textContent = clockTime(message.sentAtMs);
    meta.append(sender, role, time);

    const bubble = document.createElement('div');
    bubble.className = 'chat-text';
    if (message.redacted) bubble.textContent = 'Message redacted';
    else bubble.append(chatText(message.text));
    li.append(meta, bubble);

    if (canRedact(message)) {
      const redact = Object.assign(document.createElement('button'), { type: 'button', className: 'chat-redact', textContent: 'Redact' });
      redact.dataset.testid = 'chat-redact';
      redact.title = 'Remove this message for everyone';
      redact.onclick = () => {
        redact.disabled = true;
        clearChatError();
        room.redactMessage(message.messageId).catch((error) => {
          redact.disabled = false;
          showChatError(error);
        });
      };
      meta.append(redact);
    }
    return li;
  }

  const nearBottom = () => el.log.scrollHeight - el.log.scrollTop - el.log.clientHeight < 40;

  /** Adds a message where the room's order puts it, or replaces its element. */
  function render(message) {
    const li = messageElement(message);
    const old = nodes.get(message.messageId);
    nodes.set(message.messageId, li);
    if (old) return old.replaceWith(li);
    const stick = nearBottom();
    const index = room.messages.findIndex((m) => m.messageId === message.messageId);
    const next = index < 0 ? undefined : room.messages.slice(index + 1).find((m) => nodes.has(m.messageId));
    el.log.insertBefore(li, next ? nodes.get(next.messageId) : null);
    if (stick || message.isLocal) el.log.scrollTop = el.log.scrollHeight;
  }

  function refreshControls() {
    const closed = room.state === 'disconnected';
    el.input.disabled = closed;
    el.input.readOnly = sending;
    el.send.disabled = closed || sending || Date.now() < blockedUntil;
    el.send.textContent = sending ? 'Sending…' : 'Send';
  }

  el.log.replaceChildren();
  clearChatError();
  for (const message of room.messages) render(message);
  room.on('message', render);
  room.on('messageRedacted', render);
  room.on('disconnected', refreshControls);

  el.input.oninput = () => {
    if (!el.error.hidden && el.error.dataset.code !== 'RATE_LIMITED') clearChatError();
  };
  el.form.onsubmit = async (event) => {
    event.preventDefault();
    const text = el.input.value;
    if (!text.trim() || sending || Date.now() < blockedUntil || room.state === 'disconnected') return;
    sending = true;
    clearChatError();
    refreshControls();
    try {
      await room.sendMessage(text);
      if (el.input.value === text) el.input.value = '';
    } catch (error) {
      // The text stays in the input, to be shortened or sent again.
      showChatError(error);
      if (error && error.code === 'RATE_LIMITED') {
        blockedUntil = Date.now() + (error.retryAfterMs || 1000);
        clearTimeout(unblock);
        unblock = setTimeout(() => {
          if (el.error.dataset.code === 'RATE_LIMITED') clearChatError();
          refreshControls();
        }, blockedUntil - Date.now());
      }
    }
    sending = false;
    refreshControls();
    if (!el.input.disabled) el.input.focus();
  };
  refreshControls();
}
