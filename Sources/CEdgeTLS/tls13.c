// TLS 1.3 records opened in place, after OpenSSL's handshake.
//
// A client's OpenSSL decrypts each record into its own record buffer and copies the plaintext out:
// two copies of every received byte beyond the kernel's (the lent bytes into the record buffer,
// the plaintext out of it), about 11 % of the load generator's CPU on 64 KiB TLS responses and the
// difference to h2load, which reads the socket straight into OpenSSL's buffer. Once the handshake
// is done, the peer's records are opened here instead, in the receive buffer itself, with the
// traffic secret OpenSSL reports through its key log (RFC 8446 §7: HKDF-Expand-Label for the key
// and IV, the nonce the IV XOR the record's sequence number). OpenSSL keeps the write direction.
#include "CEdgeTLS.h"
#include <openssl/ssl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { SECRET_MAX = 48, RECORD_CIPHERTEXT_MAX = (1 << 14) + 256, TAG_BYTES = 16 };

// The peer's first application traffic secret, captured by the key log callback.
typedef struct {
    unsigned char server[SECRET_MAX];
    size_t server_len;
} captured_secrets;

struct edge_tls13_opener {
    EVP_CIPHER_CTX *ctx;
    const EVP_MD *md;
    unsigned char secret[SECRET_MAX];
    size_t secret_len, key_len;
    unsigned char iv[12];
    uint64_t sequence;
};

static int secrets_index = -1;
static void secrets_index_make(void) { secrets_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL); }
static int secrets_slot(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, secrets_index_make);
    return secrets_index;
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// "SERVER_TRAFFIC_SECRET_0 <client random> <secret>", in hex (NSS key log format).
static void key_log(const SSL *ssl, const char *line) {
    static const char label[] = "SERVER_TRAFFIC_SECRET_0 ";
    if (strncmp(line, label, sizeof label - 1) != 0) return;
    captured_secrets *s = SSL_get_ex_data(ssl, secrets_slot());
    if (!s) return;
    const char *p = strchr(line + sizeof label - 1, ' ');
    if (!p) return;
    p++;
    size_t n = strlen(p);
    if (n % 2 != 0 || n / 2 > SECRET_MAX) return;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hex_value(p[2 * i]), lo = hex_value(p[2 * i + 1]);
        if (hi < 0 || lo < 0) { s->server_len = 0; return; }
        s->server[i] = (unsigned char)(hi << 4 | lo);
    }
    s->server_len = n / 2;
}

void edge_tls13_capture(SSL_CTX *ctx) { SSL_CTX_set_keylog_callback(ctx, key_log); }

int edge_tls13_capture_start(SSL *ssl) {
    captured_secrets *s = calloc(1, sizeof *s);
    if (!s) return -1;
    if (SSL_set_ex_data(ssl, secrets_slot(), s) != 1) { free(s); return -1; }
    return 0;
}

void edge_tls13_capture_end(SSL *ssl) {
    captured_secrets *s = SSL_get_ex_data(ssl, secrets_slot());
    if (s) { OPENSSL_cleanse(s, sizeof *s); free(s); SSL_set_ex_data(ssl, secrets_slot(), NULL); }
}

// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context, for outputs no longer than the hash:
// one HMAC block.
static int expand_label(const EVP_MD *md, const unsigned char *secret, size_t secret_len, const char *label,
                        unsigned char *out, size_t out_len) {
    unsigned char info[2 + 1 + 255 + 1 + 1];
    size_t label_len = strlen(label), n = 0;
    if (out_len > (size_t)EVP_MD_get_size(md) || 6 + label_len > 255) return 0;
    info[n++] = (unsigned char)(out_len >> 8);
    info[n++] = (unsigned char)out_len;
    info[n++] = (unsigned char)(6 + label_len);
    memcpy(info + n, "tls13 ", 6); n += 6;
    memcpy(info + n, label, label_len); n += label_len;
    info[n++] = 0;      // empty context
    info[n++] = 1;      // the HKDF-Expand block counter
    unsigned char block[EVP_MAX_MD_SIZE];
    unsigned int block_len = 0;
    if (!HMAC(md, secret, (int)secret_len, info, n, block, &block_len)) return 0;
    memcpy(out, block, out_len);
    OPENSSL_cleanse(block, sizeof block);
    return 1;
}

// Key and IV from the opener's secret; the sequence starts again at 0.
static int opener_key(edge_tls13_opener *o, const EVP_CIPHER *cipher) {
    unsigned char key[32];
    int ok = expand_label(o->md, o->secret, o->secret_len, "key", key, o->key_len)
        && expand_label(o->md, o->secret, o->secret_len, "iv", o->iv, sizeof o->iv)
        && EVP_DecryptInit_ex(o->ctx, cipher, NULL, key, NULL) == 1;
    OPENSSL_cleanse(key, sizeof key);
    o->sequence = 0;
    return ok;
}

edge_tls13_opener *edge_tls13_opener_take(SSL *ssl) {
    captured_secrets *s = SSL_get_ex_data(ssl, secrets_slot());
    if (!s || s->server_len == 0 || SSL_version(ssl) != TLS1_3_VERSION || SSL_has_pending(ssl)) return NULL;
    const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
    if (!c) return NULL;
    const EVP_CIPHER *cipher; const EVP_MD *md; size_t key_len;
    switch (SSL_CIPHER_get_id(c) & 0xFFFF) {
    case 0x1301: cipher = EVP_aes_128_gcm(); md = EVP_sha256(); key_len = 16; break;
    case 0x1302: cipher = EVP_aes_256_gcm(); md = EVP_sha384(); key_len = 32; break;
    case 0x1303: cipher = EVP_chacha20_poly1305(); md = EVP_sha256(); key_len = 32; break;
    default: return NULL;   // CCM suites: OpenSSL keeps reading
    }
    if (s->server_len != (size_t)EVP_MD_get_size(md)) return NULL;
    edge_tls13_opener *o = calloc(1, sizeof *o);
    if (!o) return NULL;
    o->ctx = EVP_CIPHER_CTX_new();
    o->md = md;
    o->key_len = key_len;
    memcpy(o->secret, s->server, s->server_len);
    o->secret_len = s->server_len;
    if (!o->ctx || !opener_key(o, cipher)) { edge_tls13_opener_free(o); return NULL; }
    edge_tls13_capture_end(ssl);
    return o;
}

void edge_tls13_opener_free(edge_tls13_opener *o) {
    if (!o) return;
    EVP_CIPHER_CTX_free(o->ctx);
    OPENSSL_cleanse(o, sizeof *o);
    free(o);
}

// The post-handshake messages of a record (RFC 8446 §4.6): a new session ticket is not used (no
// resumption here); a key update moves to the next secret, and one that asks for ours makes
// OpenSSL, which keeps the write direction, send its own.
static int post_handshake(edge_tls13_opener *o, SSL *ssl, const unsigned char *p, size_t n) {
    while (n > 0) {
        if (n < 4) return EDGE_TLS13_FRAGMENTED;
        size_t len = (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
        if (len > n - 4) return EDGE_TLS13_FRAGMENTED;
        if (p[0] == 24) {   // key_update
            if (len != 1 || p[4] > 1 || n != 5) return EDGE_TLS13_BAD_RECORD;   // must end its record (§5.1)
            unsigned char next[SECRET_MAX];
            if (!expand_label(o->md, o->secret, o->secret_len, "traffic upd", next, o->secret_len)) return EDGE_TLS13_BAD_RECORD;
            memcpy(o->secret, next, o->secret_len);
            OPENSSL_cleanse(next, sizeof next);
            if (!opener_key(o, NULL)) return EDGE_TLS13_BAD_RECORD;
            if (p[4] == 1 && (SSL_key_update(ssl, SSL_KEY_UPDATE_NOT_REQUESTED) != 1 || SSL_do_handshake(ssl) != 1))
                return EDGE_TLS13_BAD_RECORD;
        } else if (p[0] != 4) {   // anything but a new_session_ticket
            return EDGE_TLS13_BAD_RECORD;
        }
        p += 4 + len; n -= 4 + len;
    }
    return 0;
}

int edge_tls13_open(edge_tls13_opener *o, SSL *ssl, unsigned char *buf, size_t len, size_t *plain_offset,
                    size_t *plain_len) {
    *plain_offset = 0; *plain_len = 0;
    if (len < 5) return 0;
    size_t body = (size_t)buf[3] << 8 | buf[4];
    // Every protected record's outer type is application_data, its version 0x0303 (§5.2).
    if (buf[0] != 23 || buf[1] != 3 || buf[2] != 3 || body > RECORD_CIPHERTEXT_MAX || body < TAG_BYTES + 1)
        return EDGE_TLS13_BAD_RECORD;
    if (len < 5 + body) return 0;
    unsigned char nonce[12];
    memcpy(nonce, o->iv, 12);
    for (int i = 0; i < 8; i++) nonce[11 - i] ^= (unsigned char)(o->sequence >> (8 * i));
    unsigned char *p = buf + 5;
    size_t clen = body - TAG_BYTES;
    int n = 0;
    if (EVP_DecryptInit_ex(o->ctx, NULL, NULL, NULL, nonce) != 1
        || EVP_DecryptUpdate(o->ctx, NULL, &n, buf, 5) != 1
        || EVP_DecryptUpdate(o->ctx, p, &n, p, (int)clen) != 1
        || EVP_CIPHER_CTX_ctrl(o->ctx, EVP_CTRL_AEAD_SET_TAG, TAG_BYTES, p + clen) != 1
        || EVP_DecryptFinal_ex(o->ctx, p + n, &n) != 1)
        return EDGE_TLS13_BAD_RECORD;   // a forged or damaged record
    if (o->sequence == UINT64_MAX) return EDGE_TLS13_BAD_RECORD;
    o->sequence++;
    // TLSInnerPlaintext: content, the real type, zero padding.
    size_t end = clen;
    while (end > 0 && p[end - 1] == 0) end--;
    if (end == 0) return EDGE_TLS13_BAD_RECORD;
    unsigned char type = p[end - 1];
    size_t content = end - 1;
    switch (type) {
    case 23:
        *plain_offset = 5; *plain_len = content;
        return (int)(5 + body);
    case 22: {
        int r = post_handshake(o, ssl, p, content);
        return r < 0 ? r : (int)(5 + body);
    }
    case 21:
        if (content != 2) return EDGE_TLS13_BAD_RECORD;
        return p[1] == 0 ? EDGE_TLS13_CLOSED : EDGE_TLS13_ALERT;   // close_notify, or another alert
    default:
        return EDGE_TLS13_BAD_RECORD;
    }
}
