#!/usr/bin/env python3
"""Edits a copy of the mediasoup worker's sources to build and run against Debian's libraries.

The upstream build downloads eight subprojects (openssl, libuv, libsrtp2, usrsctp, abseil,
catch2, flatbuffers, liburing) from the internet; here each one is replaced by a library found
through pkg-config: Debian's, linked dynamically, except libsrtp2 and liburing, which
mediasoup-worker.sh builds from Debian's source archives and links statically. Test and fuzzer targets are dropped:
they need catch2 v3, which Debian bookworm does not have.

One source fix: the DTLS BIO callback answered 1 to every BIO_ctrl() query. Debian's OpenSSL
is built with kernel TLS, so `BIO_get_ktls_send()` is a real BIO_ctrl() call there; answered 1,
OpenSSL believes the kernel sends the records, never allocates its write buffer, and the
worker crashes on the first handshake. The callback must pass through the return value of
every completed operation.
"""
import re
import sys

worker = sys.argv[1]


def edit(path, transform):
    with open(path) as f:
        text = f.read()
    new = transform(text)
    if new == text:
        sys.exit(f"patch-meson: nothing changed in {path}; the mediasoup sources changed shape")
    with open(path, "w") as f:
        f.write(new)


SYSTEM_DEPS = """
# System libraries (Debian) instead of downloaded subprojects.
openssl_dep = dependency('openssl')
libuv_dep = dependency('libuv')
libsrtp2_dep = dependency('libsrtp2')
usrsctp_dep = dependency('usrsctp')
flatbuffers_dep = dependency('flatbuffers')
absl_container_dep = [dependency('absl_container_common'), dependency('absl_raw_hash_set'), dependency('absl_hash')]
absl_strings_dep = dependency('absl_strings')
absl_types_dep = dependency('absl_optional')
"""


def main_meson(text):
    # Debian bookworm ships meson 1.0.1; the file builds with it.
    text = text.replace("meson_version: '>= 1.1.0'", "meson_version: '>= 1.0.0'")
    # Replace the block of subproject() calls (openssl .. flatbuffers) with system lookups.
    text, n = re.subn(r"openssl_proj = subproject\(.*?flatbuffers_proj = subproject\(.*?\n\)\n", SYSTEM_DEPS, text, flags=re.S)
    if n != 1:
        sys.exit("patch-meson: subproject block not found")
    replacements = {
        "abseil_cpp_proj.get_variable('absl_container_dep')": "absl_container_dep",
        "openssl_proj.get_variable('openssl_dep')": "openssl_dep",
        "libuv_proj.get_variable('libuv_dep')": "libuv_dep",
        "libsrtp2_proj.get_variable('libsrtp2_dep')": "libsrtp2_dep",
        "usrsctp_proj.get_variable('usrsctp_dep')": "usrsctp_dep",
        "flatbuffers_proj.get_variable('flatbuffers_dep')": "flatbuffers_dep",
    }
    for old, new in replacements.items():
        text = text.replace(old, new)
    # Static libraries of the subprojects are no longer linked whole: the system ones are shared.
    text = re.sub(r"\n  (abseil_cpp_proj|openssl_proj|libuv_proj|libsrtp2_proj|usrsctp_proj|flatbuffers_proj)\.get_variable\('[a-z_0-9]+'\),", "", text)
    # Drop tests and fuzzer (need catch2 v3 and clang's fuzzer runtime).
    idx = text.find("test_sources = [")
    if idx < 0:
        sys.exit("patch-meson: test_sources not found")
    text = text[:idx]
    # liburing from mediasoup-worker.sh's static build instead of the downloaded subproject.
    old_uring = """    liburing_proj = subproject('liburing', default_options: ['default_library=static'], required: true)

    dependencies += [
      liburing_proj.get_variable('uring'),
    ]
    link_whole += [
      liburing_proj.get_variable('liburing')
    ]"""
    if old_uring not in text:
        sys.exit("patch-meson: liburing subproject block not found")
    text = text.replace(old_uring, "    dependencies += [\n      dependency('liburing', static: true),\n    ]")
    # The compat header maps the libsrtp 3 API the sources use onto libsrtp 2.5 (Debian's version).
    text = text.replace(
        "cpp_args = [\n",
        "cpp_args = [\n  '-include', meson.current_source_dir() / 'srtp-compat.h',\n",
        1,
    )
    return text


def libwebrtc_meson(text):
    text, n = re.subn(r"abseil_cpp_proj = subproject\(.*?\n\)\n", "", text, flags=re.S)
    if n != 1:
        sys.exit("patch-meson: libwebrtc abseil subproject not found")
    for name in ["openssl_dep", "flatbuffers_dep", "libuv_dep", "absl_strings_dep", "absl_types_dep"]:
        text = re.sub(r"[a-z_0-9]+_proj\.get_variable\('%s'\)" % name, name, text)
    return text


def dtls_bio_callback(text):
    return text.replace(
        "long resultOfcallback = (operationType == BIO_CB_RETURN) ? static_cast<long>(ret) : 1;",
        "long resultOfcallback = (operationType & BIO_CB_RETURN) ? static_cast<long>(ret) : 1;",
    )


def key_frame_retry(text):
    # A browser encoder ignores a key frame request that comes within 300 ms of the previous one
    # (libwebrtc's kMinKeyframeSendIntervalMs, shared by all simulcast layers). A request for a
    # new subscriber's layer that lands in that window is dropped, and upstream waits a full
    # second to ask again: retry just after the window instead.
    old = "static constexpr uint32_t KeyFrameRetransmissionWaitTime{ 1000u };"
    if old not in text:
        sys.exit("patch: KeyFrameRetransmissionWaitTime not found")
    return text.replace(old, "static constexpr uint32_t KeyFrameRetransmissionWaitTime{ 350u };")


edit(f"{worker}/meson.build", main_meson)
edit(f"{worker}/src/RTC/DtlsTransport.cpp", dtls_bio_callback)
edit(f"{worker}/deps/libwebrtc/meson.build", libwebrtc_meson)
edit(f"{worker}/src/RTC/KeyFrameRequestManager.cpp", key_frame_retry)
