#!/usr/bin/env python3
"""WebRTC subscribers that receive without decoding: GStreamer's webrtcbin (libnice ICE,
OpenSSL DTLS, libsrtp) feeding fake sinks. An independent WebRTC implementation that costs far
less per packet than a browser tab, so the SFU can be measured at tens of thousands of
forwarded packets per second on a small machine.

Line protocol on stdin/stdout, one JSON object per line:
  {"cmd": "offer", "id": "sub-3", "media": ["<caps>", ...]}  -> {"id": "sub-3", "sdp": "<offer>"}
  {"cmd": "answer", "id": "sub-3", "sdp": "<answer>"}         -> {"id": "sub-3", "sdp": ""}
  {"cmd": "accept-offer", "id": "sub-3", "sdp": "<offer>"}    -> {"id": "sub-3", "sdp": "<answer>"}
  {"cmd": "stats"}                                   -> {"stats": {"received": n, "lost": n, "subscribers": n}}
"""
import json
import sys
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

Gst.init(None)
pipeline = Gst.Pipeline.new("subscribers")
pipeline.set_state(Gst.State.PLAYING)
webrtcbins = {}
out_lock = threading.Lock()


def reply(message):
    with out_lock:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()


def on_pad_added(webrtc, pad):
    if pad.get_direction() != Gst.PadDirection.SRC:
        return
    sink = Gst.ElementFactory.make("fakesink")
    sink.set_property("sync", False)
    sink.set_property("async", False)
    pipeline.add(sink)
    sink.sync_state_with_parent()
    pad.link(sink.get_static_pad("sink"))


def new_webrtcbin(subscriber_id):
    webrtc = Gst.ElementFactory.make("webrtcbin", subscriber_id)
    webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
    webrtc.connect("pad-added", on_pad_added)
    pipeline.add(webrtc)
    webrtc.sync_state_with_parent()
    webrtcbins[subscriber_id] = webrtc
    return webrtc


def offer(subscriber_id, media):
    """webrtcbin offers, so that it is the controlling ICE agent the SFU's ICE-lite needs
    (webrtcbin 1.22 does not take that role as an answerer)."""
    webrtc = new_webrtcbin(subscriber_id)
    for caps in media:
        webrtc.emit("add-transceiver", GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY, Gst.Caps.from_string(caps))

    def on_offer(promise):
        result = promise.get_reply()
        local = result.get_value("offer") if result and result.has_field("offer") else None
        if local is None:
            reply({"id": subscriber_id, "error": result.to_string() if result else "no offer"})
            return
        webrtc.emit("set-local-description", local, Gst.Promise.new())
        reply({"id": subscriber_id, "sdp": local.sdp.as_text()})

    webrtc.emit("create-offer", None, Gst.Promise.new_with_change_func(on_offer))


def accept(subscriber_id, answer_text):
    webrtc = webrtcbins[subscriber_id]
    _, sdp = GstSdp.SDPMessage.new_from_text(answer_text)
    answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, sdp)

    def on_set(promise):
        result = promise.get_reply()
        if result and result.has_field("error"):
            reply({"id": subscriber_id, "error": result.to_string()})
        else:
            reply({"id": subscriber_id, "sdp": ""})

    webrtc.emit("set-remote-description", answer, Gst.Promise.new_with_change_func(on_set))


def accept_offer(subscriber_id, offer_text):
    """Answers a full-ICE server's offer (Janus). The answer is sent once candidate gathering
    is complete, with every candidate in it, so the server needs no trickled candidates."""
    webrtc = new_webrtcbin(subscriber_id)
    _, sdp = GstSdp.SDPMessage.new_from_text(offer_text)
    remote = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.OFFER, sdp)
    answered = []

    def send_when_gathered(*_args):
        if answered or webrtc.get_property("ice-gathering-state") != GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            return
        local = webrtc.get_property("local-description")
        if local is None:
            return
        answered.append(True)
        reply({"id": subscriber_id, "sdp": local.sdp.as_text()})

    webrtc.connect("notify::ice-gathering-state", lambda *args: GLib.idle_add(send_when_gathered))

    def on_answer(promise):
        result = promise.get_reply()
        local = result.get_value("answer") if result and result.has_field("answer") else None
        if local is None:
            reply({"id": subscriber_id, "error": result.to_string() if result else "no answer"})
            return
        webrtc.emit("set-local-description", local, Gst.Promise.new())
        GLib.idle_add(send_when_gathered)

    def on_remote(promise):
        result = promise.get_reply()
        if result and result.has_field("error"):
            reply({"id": subscriber_id, "error": result.to_string()})
            return
        webrtc.emit("create-answer", None, Gst.Promise.new_with_change_func(on_answer))

    webrtc.emit("set-remote-description", remote, Gst.Promise.new_with_change_func(on_remote))


def stats():
    received = 0
    lost = 0
    for webrtc in list(webrtcbins.values()):
        promise = Gst.Promise.new()
        webrtc.emit("get-stats", None, promise)
        promise.wait()
        report = promise.get_reply()

        def add(_field, value, _data):
            nonlocal received, lost
            if isinstance(value, Gst.Structure) and value.get_name() == "inbound-rtp":
                ok, count = value.get_uint64("packets-received")
                received += count if ok else 0
                ok, missing = value.get_int64("packets-lost")
                lost += max(0, missing) if ok else 0
            return True

        report.foreach(add, None)
    reply({"stats": {"received": received, "lost": lost, "subscribers": len(webrtcbins)}})


def read_commands():
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "offer":
            GLib.idle_add(offer, command["id"], command["media"])
        elif command["cmd"] == "answer":
            GLib.idle_add(accept, command["id"], command["sdp"])
        elif command["cmd"] == "accept-offer":
            GLib.idle_add(accept_offer, command["id"], command["sdp"])
        elif command["cmd"] == "stats":
            GLib.idle_add(stats)
    GLib.idle_add(loop.quit)


loop = GLib.MainLoop()
threading.Thread(target=read_commands, daemon=True).start()
loop.run()
pipeline.set_state(Gst.State.NULL)
