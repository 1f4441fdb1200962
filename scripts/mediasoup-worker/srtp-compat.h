// Force-included into every worker translation unit. The worker sources target the libsrtp 3
// API; Debian bookworm ships libsrtp 2.5, whose differences are covered here without editing
// the worker's .cpp files:
//  - srtp_stream_remove() is called srtp_remove_stream() in 2.x;
//  - the protect/unprotect functions take an int* length instead of size_t*.
#pragma once
#ifdef __cplusplus
#include <srtp2/srtp.h>
#include <cstddef>

inline srtp_err_status_t srtp_stream_remove(srtp_t session, uint32_t ssrc)
{
  return srtp_remove_stream(session, ssrc);
}

#define GATEWAY_SRTP_SIZE_T_OVERLOAD(name)                                                     \
  inline srtp_err_status_t name(srtp_t ctx, void* data, size_t* len)                           \
  {                                                                                            \
    int intLen = static_cast<int>(*len);                                                       \
    srtp_err_status_t status = ::name(ctx, data, &intLen);                                     \
    *len = static_cast<size_t>(intLen);                                                        \
    return status;                                                                             \
  }

GATEWAY_SRTP_SIZE_T_OVERLOAD(srtp_protect)
GATEWAY_SRTP_SIZE_T_OVERLOAD(srtp_unprotect)
GATEWAY_SRTP_SIZE_T_OVERLOAD(srtp_protect_rtcp)
GATEWAY_SRTP_SIZE_T_OVERLOAD(srtp_unprotect_rtcp)
#undef GATEWAY_SRTP_SIZE_T_OVERLOAD
#endif
