/* mw_frame.h - the framings: where one message ends in a byte stream
 * (mw_conn_opts.frame). The sans-I/O codecs are in frame_impl.h.
 *
 * Kinds:
 *   MW_FRAME_U16BE  2-byte big-endian payload length, then the payload.
 *   MW_FRAME_U32BE  4-byte big-endian payload length, then the payload.
 *   MW_FRAME_LINE   the payload, then '\n' (the payload must not contain '\n').
 *   MW_FRAME_FIXED  every payload is exactly fixed_len bytes, nothing around it.
 *   MW_FRAME_NONE   the transport already delimits messages (WebSocket): the
 *                   whole input is one payload.
 * */
#ifndef MW_FRAME_H
#define MW_FRAME_H


#ifdef __cplusplus
extern "C" {
#endif

typedef enum mw_frame_kind {
    MW_FRAME_NONE = 0,
    MW_FRAME_U16BE,
    MW_FRAME_U32BE,
    MW_FRAME_LINE,
    MW_FRAME_FIXED
} mw_frame_kind_t;

#ifdef __cplusplus
}
#endif

#endif
