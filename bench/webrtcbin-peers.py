#!/usr/bin/env python3
"""WebRTC peers run by GStreamer's webrtcbin (libnice ICE, OpenSSL DTLS, libsrtp), many in one
process. An independent WebRTC implementation that costs far less per packet than a browser
tab, so a media server can be measured at tens of thousands of packets per second, or dozens of
calls, on a small machine.

Subscribers receive into fake sinks without decoding; one may decode a video track until its
first frame, to time a join. Publishers send pre-encoded media (VP8 clips in IVF files, made
once by the caller; an Opus tone encoded here at start) without encoding anything per call:
each frame is pushed at its time, the clip loops, and a key frame request (PLI or FIR) restarts
the clip of its SSRC at its key frame. A simulcast video track is one m-line carrying one SSRC per layer.

Line protocol on stdin/stdout, one JSON object per line:
  {"cmd": "offer", "id": "sub-3", "media": ["<caps>", ...], "watch": 0}
                                                    -> {"id": "sub-3", "sdp": "<offer>"}
  {"cmd": "answer", "id": "sub-3", "sdp": "<answer>"}         -> {"id": "sub-3", "sdp": ""}
  {"cmd": "accept-offer", "id": "sub-3", "sdp": "<offer>", "watch": 0}
                                                    -> {"id": "sub-3", "sdp": "<answer>"}
  {"cmd": "publish", "id": "pub-1", "tracks": [<track>, ...]} -> {"id": "pub-1", "sdp": "<offer>"}
      <track>: {"kind": "audio", "ssrc": n}
            or {"kind": "video", "layers": [{"ssrc": n, "clip": "<ivf path>"}, ...]}
  {"cmd": "close", "id": "pub-1"}                             -> {"id": "pub-1", "sdp": ""}
  {"cmd": "stats"}                                   -> {"stats": {"received": n, "lost": n, "subscribers": n}}
"watch" (optional) is the m-line index of a VP8 track to decode until its first frame; then
  -> {"id": "sub-3", "firstFrame": <CLOCK_MONOTONIC in ns>}
Offers and answers carry every candidate (gathering is complete before they are sent).
"""
import json
import os
import struct
import sys
import threading
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstApp", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstApp, GstSdp, GstWebRTC  # noqa: E402,F401

Gst.init(None)
pipeline = Gst.Pipeline.new("peers")
pipeline.set_state(Gst.State.PLAYING)
# Peer id -> {"webrtc": element, "elements": [every element of the peer], "streams": [Stream]}
peers = {}
out_lock = threading.Lock()
DEBUG = bool(os.environ.get("WEBRTCBIN_DEBUG"))

VP8_PT = 96
OPUS_PT = 111
VP8_CAPS = f"application/x-rtp,media=video,encoding-name=VP8,payload={VP8_PT},clock-rate=90000,rtcp-fb-nack=(boolean)true,rtcp-fb-nack-pli=(boolean)true,rtcp-fb-ccm-fir=(boolean)true"
OPUS_CAPS = f"application/x-rtp,media=audio,encoding-name=OPUS,payload={OPUS_PT},clock-rate=48000,encoding-params=(string)2"
# Packets of the size browsers send, so that packet counts compare.
MTU = 1200


def reply(message):
    with out_lock:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()


# ---- pre-encoded media ----

clips = {}


def vp8_clip(path):
    """Frames of an IVF file: (payload, is key frame), and the frame interval in ns."""
    if path in clips:
        return clips[path]
    with open(path, "rb") as f:
        data = f.read()
    header_size = struct.unpack_from("<H", data, 6)[0]
    rate, scale = struct.unpack_from("<II", data, 16)
    frames = []
    offset = header_size
    while offset + 12 <= len(data):
        size = struct.unpack_from("<I", data, offset)[0]
        payload = data[offset + 12 : offset + 12 + size]
        # VP8 frame tag: bit 0 of the first byte is 0 for a key frame.
        frames.append((payload, payload[0] & 1 == 0))
        offset += 12 + size
    clips[path] = (frames, Gst.SECOND * scale // rate, Gst.Caps.from_string("video/x-vp8"))
    return clips[path]


def opus_clip():
    """Five seconds of a 300 Hz tone as 20 ms Opus packets (stereo, 32 kbit/s), encoded once."""
    if "opus" in clips:
        return clips["opus"]
    encoder = Gst.parse_launch(
        "audiotestsrc wave=sine freq=300 volume=0.5 num-buffers=250 samplesperbuffer=960 ! audio/x-raw,rate=48000,channels=2 "
        "! opusenc bitrate=32000 frame-size=20 ! appsink name=out sync=false"
    )
    sink = encoder.get_by_name("out")
    encoder.set_state(Gst.State.PLAYING)
    frames = []
    caps = None
    while True:
        sample = sink.emit("pull-sample")
        if sample is None:
            break
        caps = sample.get_caps()
        buffer = sample.get_buffer()
        frames.append((buffer.extract_dup(0, buffer.get_size()), True))
    encoder.set_state(Gst.State.NULL)
    clips["opus"] = (frames, 20 * Gst.MSECOND, caps)
    return clips["opus"]


class Stream:
    """One looping clip pushed into an appsrc at its frame rate."""

    def __init__(self, clip, ssrc):
        self.ssrc = ssrc
        self.frames, self.interval, caps = clip
        self.src = Gst.ElementFactory.make("appsrc")
        self.src.set_property("caps", caps)
        self.src.set_property("format", Gst.Format.TIME)
        self.src.set_property("is-live", True)
        self.src.set_property("do-timestamp", True)
        self.position = 0
        self.due = time.monotonic_ns()

    def restart(self):
        """A receiver asked for a key frame: the clip's first frame is one."""
        self.position = 0
        return Gst.PadProbeReturn.OK

    def push_due(self, now):
        # After a stall, at most a few frames late rather than a burst of them.
        if now - self.due > 3 * self.interval:
            self.due = now - 3 * self.interval
        while self.due <= now:
            payload, _ = self.frames[self.position]
            self.position = (self.position + 1) % len(self.frames)
            self.src.push_buffer(Gst.Buffer.new_wrapped(payload))
            self.due += self.interval


streams = []
streams_lock = threading.Lock()


def push_frames():
    now = time.monotonic_ns()
    with streams_lock:
        for stream in streams:
            stream.push_due(now)
    return True


# ---- peers ----


def add_element(peer, factory, **properties):
    element = Gst.ElementFactory.make(factory)
    for name, value in properties.items():
        element.set_property(name.replace("_", "-"), value)
    pipeline.add(element)
    peer["elements"].append(element)
    return element


def fake_sink(peer):
    return add_element(peer, "fakesink", sync=False, **{"async": False})


def on_pad_added(peer, watch, webrtc, pad):
    if pad.get_direction() != Gst.PadDirection.SRC:
        return
    mline = pad.get_property("transceiver").get_property("mlineindex")
    if watch is None or mline != watch:
        sink = fake_sink(peer)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))
        return
    # Decode until the first frame, then drop at the depayloader: the time is all it is for.
    depay = add_element(peer, "rtpvp8depay")
    decoder = add_element(peer, "vp8dec")
    sink = fake_sink(peer)
    decoded = []

    def on_decoded(_pad, _info):
        if not decoded:
            decoded.append(True)
            reply({"id": peer["id"], "firstFrame": time.monotonic_ns()})
        return Gst.PadProbeReturn.OK

    def drop_after_first(_pad, _info):
        return Gst.PadProbeReturn.DROP if decoded else Gst.PadProbeReturn.OK

    decoder.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, on_decoded)
    depay.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, drop_after_first)
    depay.link(decoder)
    decoder.link(sink)
    for element in (sink, decoder, depay):
        element.sync_state_with_parent()
    pad.link(depay.get_static_pad("sink"))


def new_peer(peer_id, watch=None):
    peer = {"id": peer_id, "elements": [], "streams": [], "sessions": []}
    webrtc = add_element(peer, "webrtcbin", bundle_policy=GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
    webrtc.connect("pad-added", lambda element, pad: on_pad_added(peer, watch, element, pad))
    webrtc.sync_state_with_parent()
    peer["webrtc"] = webrtc
    peers[peer_id] = peer
    return peer


def reply_when_gathered(peer, kind):
    """Replies with the local description once every candidate is in it."""
    webrtc = peer["webrtc"]
    sent = []

    def send(*_args):
        if sent or webrtc.get_property("ice-gathering-state") != GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            return False
        local = webrtc.get_property("local-description")
        if local is None:
            return False
        sent.append(True)
        reply({"id": peer["id"], "sdp": local.sdp.as_text()})
        return False

    webrtc.connect("notify::ice-gathering-state", lambda *args: GLib.idle_add(send))

    def on_created(promise):
        result = promise.get_reply()
        local = result.get_value(kind) if result and result.has_field(kind) else None
        if local is None:
            reply({"id": peer["id"], "error": result.to_string() if result else f"no {kind}"})
            return
        webrtc.emit("set-local-description", local, Gst.Promise.new())
        GLib.idle_add(send)

    return on_created


def offer(subscriber_id, media, watch=None):
    """webrtcbin offers, so that it is the controlling ICE agent the SFU's ICE-lite needs
    (webrtcbin 1.22 does not take that role as an answerer)."""
    webrtc = new_peer(subscriber_id, watch)["webrtc"]
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


def publish(peer_id, tracks):
    """A sending peer: one send-only m-line per track, in the order given; a video track's
    layers share its m-line, one payloader (and SSRC) each. Offers, candidates included."""
    peer = new_peer(peer_id)
    webrtc = peer["webrtc"]
    for index, track in enumerate(tracks):
        sink = webrtc.request_pad_simple(f"sink_{index}")
        transceiver = sink.get_property("transceiver")
        transceiver.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
        if track["kind"] == "audio":
            transceiver.set_property("codec-preferences", Gst.Caps.from_string(OPUS_CAPS))
            layers = [{"ssrc": track["ssrc"], "clip": None}]
        else:
            transceiver.set_property("codec-preferences", Gst.Caps.from_string(VP8_CAPS))
            layers = track["layers"]
        funnel = add_element(peer, "rtpfunnel")
        for layer in layers:
            if layer["clip"] is None:
                stream = Stream(opus_clip(), layer["ssrc"])
                pay = add_element(peer, "rtpopuspay", pt=OPUS_PT, ssrc=layer["ssrc"], mtu=MTU)
            else:
                stream = Stream(vp8_clip(layer["clip"]), layer["ssrc"])
                # 15-bit picture ids, as browsers send: the servers rewrite them across layers.
                pay = add_element(peer, "rtpvp8pay", pt=VP8_PT, ssrc=layer["ssrc"], mtu=MTU, picture_id_mode=2)
            pipeline.add(stream.src)
            peer["elements"].append(stream.src)
            peer["streams"].append(stream)
            stream.src.link(pay)
            pay.link(funnel)
        funnel.link_pads("src", webrtc, sink.get_name())
    for element in peer["elements"]:
        element.sync_state_with_parent()
    with streams_lock:
        streams.extend(peer["streams"])
    webrtc.emit("create-offer", None, Gst.Promise.new_with_change_func(reply_when_gathered(peer, "offer")))


def on_feedback(peer, _session, rtcp_type, feedback_type, _sender_ssrc, media_ssrc, fci):
    """PLI and FIR restart the clip of the SSRC they name. webrtcbin 1.22 does not deliver them
    as upstream events through its bundle funnel, so they are read off the RTP session."""
    if rtcp_type != 206 or feedback_type not in (1, 4):
        return
    if feedback_type == 4 and fci is not None and fci.get_size() >= 4:
        media_ssrc = struct.unpack(">I", fci.extract_dup(0, 4))[0]
    for stream in peer["streams"]:
        if stream.ssrc == media_ssrc:
            stream.restart()


def watch_feedback(peer):
    elements = []
    peer["webrtc"].iterate_recurse().foreach(elements.append)
    for element in elements:
        factory = element.get_factory()
        if factory is not None and factory.get_name() == "rtpsession" and element not in peer["sessions"]:
            peer["sessions"].append(element)
            element.get_property("internal-session").connect("on-feedback-rtcp", lambda *args: on_feedback(peer, *args))


def accept(subscriber_id, answer_text):
    peer = peers[subscriber_id]
    webrtc = peer["webrtc"]
    _, sdp = GstSdp.SDPMessage.new_from_text(answer_text)
    answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, sdp)

    def on_set(promise):
        result = promise.get_reply()
        if result and result.has_field("error"):
            reply({"id": subscriber_id, "error": result.to_string()})
        else:
            if peer["streams"]:
                GLib.idle_add(watch_feedback, peer)
            reply({"id": subscriber_id, "sdp": ""})

    webrtc.emit("set-remote-description", answer, Gst.Promise.new_with_change_func(on_set))


def accept_offer(subscriber_id, offer_text, watch=None):
    """Answers a full-ICE server's offer (Janus). The answer is sent once candidate gathering
    is complete, with every candidate in it, so the server needs no trickled candidates."""
    peer = new_peer(subscriber_id, watch)
    webrtc = peer["webrtc"]
    _, sdp = GstSdp.SDPMessage.new_from_text(offer_text)
    remote = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.OFFER, sdp)
    on_answer = reply_when_gathered(peer, "answer")

    def on_remote(promise):
        result = promise.get_reply()
        if result and result.has_field("error"):
            reply({"id": subscriber_id, "error": result.to_string()})
            return
        webrtc.emit("create-answer", None, Gst.Promise.new_with_change_func(on_answer))

    webrtc.emit("set-remote-description", remote, Gst.Promise.new_with_change_func(on_remote))


def close(peer_id):
    peer = peers.pop(peer_id, None)
    if peer is not None:
        with streams_lock:
            for stream in peer["streams"]:
                streams.remove(stream)
        for element in peer["elements"]:
            element.set_state(Gst.State.NULL)
            pipeline.remove(element)
    reply({"id": peer_id, "sdp": ""})


def stats():
    """Summed inbound-rtp counters. Run on its own thread: waiting for each webrtcbin's report
    on the main loop would hold back the publishers' frames."""
    received = 0
    lost = 0
    subscribers = 0
    for peer in list(peers.values()):
        promise = Gst.Promise.new()
        peer["webrtc"].emit("get-stats", None, promise)
        promise.wait()
        report = promise.get_reply()
        if report is None:
            continue
        subscribers += 0 if peer["streams"] else 1

        def add(_field, value, _data):
            nonlocal received, lost
            if isinstance(value, Gst.Structure) and value.get_name() == "inbound-rtp":
                ok, count = value.get_uint64("packets-received")
                received += count if ok else 0
                # The RTP source's count of sequence gaps, per SSRC: the inbound-rtp
                # packets-lost of webrtcbin 1.22 reads one jitterbuffer for every bundled stream.
                source = value.get_value("gst-rtpsource-stats") if value.has_field("gst-rtpsource-stats") else None
                ok, missing = source.get_int("packets-lost") if source is not None else (False, 0)
                lost += max(0, missing) if ok else 0
                if DEBUG:
                    print(f"{peer['id']} ssrc {value.get_uint('ssrc')[1]}: received {count}, lost {missing}", file=sys.stderr, flush=True)
            return True

        report.foreach(add, None)
    reply({"stats": {"received": received, "lost": lost, "subscribers": subscribers}})


def read_commands():
    for line in sys.stdin:
        command = json.loads(line)
        name = command["cmd"]
        if name == "offer":
            GLib.idle_add(offer, command["id"], command["media"], command.get("watch"))
        elif name == "answer":
            GLib.idle_add(accept, command["id"], command["sdp"])
        elif name == "accept-offer":
            GLib.idle_add(accept_offer, command["id"], command["sdp"], command.get("watch"))
        elif name == "publish":
            GLib.idle_add(publish, command["id"], command["tracks"])
        elif name == "close":
            GLib.idle_add(close, command["id"])
        elif name == "stats":
            threading.Thread(target=stats, daemon=True).start()
    GLib.idle_add(loop.quit)


loop = GLib.MainLoop()
# Frames are due every 20 ms (Opus) or 33 ms (30 fps video): a 5 ms tick keeps each within 5 ms.
GLib.timeout_add(5, push_frames)
threading.Thread(target=read_commands, daemon=True).start()
loop.run()
pipeline.set_state(Gst.State.NULL)
