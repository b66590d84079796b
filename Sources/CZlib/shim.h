#ifndef WEFT_CZLIB_SHIM_H
#define WEFT_CZLIB_SHIM_H
#include <zlib.h>

// deflateInit2 and inflateInit2 are macros Swift cannot call; wrap them.
static inline int weft_deflateInit2(z_streamp strm, int level, int method, int windowBits,
                                    int memLevel, int strategy) {
    return deflateInit2(strm, level, method, windowBits, memLevel, strategy);
}

static inline int weft_inflateInit2(z_streamp strm, int windowBits) {
    return inflateInit2(strm, windowBits);
}
#endif
