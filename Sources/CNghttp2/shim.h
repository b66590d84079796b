#ifndef WEFT_CNGHTTP2_SHIM_H
#define WEFT_CNGHTTP2_SHIM_H
// Debian's libnghttp2-dev 1.52 (with the backported stream reset rate limit and
// CONTINUATION limit options).
#include <nghttp2/nghttp2.h>
#include "session_pool.h"
#endif
