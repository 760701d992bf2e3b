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

// The server's first application traffic secret, captured by the key log callback (a client
// opens the server's records with it, a server seals its own), and on a server the number of
// records OpenSSL sealed under it before the take-over (its session tickets).
typedef struct {
    unsigned char server[SECRET_MAX];
    size_t server_len;
    long server_records;   // -1: not known
} captured_secrets;

// One direction's record protection: the secret, the key and IV made from it, the sequence.
typedef struct {
    EVP_CIPHER_CTX *ctx;
    const EVP_MD *md;
    unsigned char secret[SECRET_MAX];
    size_t secret_len, key_len;
    unsigned char iv[12];
    uint64_t sequence;
    int encrypt;
} protection;

struct edge_tls13_opener {
    protection p;
};

// A server's write direction after the take-over: ours seals what the server sends; OpenSSL's
// own state, mirrored, opens the few records OpenSSL still writes (alerts, close_notify, the key
// update it answers a client's with) so that they are sealed again under ours.
struct edge_tls13_sealer {
    protection ours, openssl;
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
    s->server_records = -1;
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

// Key and IV from the secret; the sequence starts again at 0. `cipher` NULL: the one set before.
static int protection_key(protection *o, const EVP_CIPHER *cipher) {
    unsigned char key[32];
    int ok = expand_label(o->md, o->secret, o->secret_len, "key", key, o->key_len)
        && expand_label(o->md, o->secret, o->secret_len, "iv", o->iv, sizeof o->iv)
        && (o->encrypt ? EVP_EncryptInit_ex(o->ctx, cipher, NULL, key, NULL)
                       : EVP_DecryptInit_ex(o->ctx, cipher, NULL, key, NULL)) == 1;
    OPENSSL_cleanse(key, sizeof key);
    o->sequence = 0;
    return ok;
}

// The next secret (a key update, RFC 8446 §7.2) and its key.
static int protection_update(protection *o) {
    unsigned char next[SECRET_MAX];
    if (!expand_label(o->md, o->secret, o->secret_len, "traffic upd", next, o->secret_len)) return 0;
    memcpy(o->secret, next, o->secret_len);
    OPENSSL_cleanse(next, sizeof next);
    return protection_key(o, NULL);
}

// The negotiated suite, when it is one handled here (not the CCM suites).
static int suite(SSL *ssl, const EVP_CIPHER **cipher, const EVP_MD **md, size_t *key_len) {
    if (SSL_version(ssl) != TLS1_3_VERSION) return 0;
    const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
    if (!c) return 0;
    switch (SSL_CIPHER_get_id(c) & 0xFFFF) {
    case 0x1301: *cipher = EVP_aes_128_gcm(); *md = EVP_sha256(); *key_len = 16; return 1;
    case 0x1302: *cipher = EVP_aes_256_gcm(); *md = EVP_sha384(); *key_len = 32; return 1;
    case 0x1303: *cipher = EVP_chacha20_poly1305(); *md = EVP_sha256(); *key_len = 32; return 1;
    default: return 0;
    }
}

static int protection_start(protection *o, SSL *ssl, const captured_secrets *s, int encrypt) {
    const EVP_CIPHER *cipher;
    if (!suite(ssl, &cipher, &o->md, &o->key_len) || s->server_len != (size_t)EVP_MD_get_size(o->md)) return 0;
    o->ctx = EVP_CIPHER_CTX_new();
    if (!o->ctx) return 0;
    o->encrypt = encrypt;
    memcpy(o->secret, s->server, s->server_len);
    o->secret_len = s->server_len;
    return protection_key(o, cipher);
}

static void protection_end(protection *o) {
    EVP_CIPHER_CTX_free(o->ctx);
    OPENSSL_cleanse(o, sizeof *o);
}

static void nonce_for(const protection *o, unsigned char nonce[12]) {
    memcpy(nonce, o->iv, 12);
    for (int i = 0; i < 8; i++) nonce[11 - i] ^= (unsigned char)(o->sequence >> (8 * i));
}

edge_tls13_opener *edge_tls13_opener_take(SSL *ssl) {
    captured_secrets *s = SSL_get_ex_data(ssl, secrets_slot());
    if (!s || s->server_len == 0 || SSL_is_server(ssl) || SSL_has_pending(ssl)) return NULL;
    edge_tls13_opener *o = calloc(1, sizeof *o);
    if (!o) return NULL;
    if (!protection_start(&o->p, ssl, s, 0)) { edge_tls13_opener_free(o); return NULL; }
    edge_tls13_capture_end(ssl);
    return o;
}

void edge_tls13_opener_free(edge_tls13_opener *o) {
    if (!o) return;
    protection_end(&o->p);
    free(o);
}

// The post-handshake messages of a record (RFC 8446 §4.6): a new session ticket is not used (no
// resumption here); a key update moves to the next secret, and one that asks for ours makes
// OpenSSL, which keeps the write direction, send its own.
static int post_handshake(protection *o, SSL *ssl, const unsigned char *p, size_t n) {
    while (n > 0) {
        if (n < 4) return EDGE_TLS13_FRAGMENTED;
        size_t len = (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
        if (len > n - 4) return EDGE_TLS13_FRAGMENTED;
        if (p[0] == 24) {   // key_update
            if (len != 1 || p[4] > 1 || n != 5) return EDGE_TLS13_BAD_RECORD;   // must end its record (§5.1)
            if (!protection_update(o)) return EDGE_TLS13_BAD_RECORD;
            if (p[4] == 1 && (SSL_key_update(ssl, SSL_KEY_UPDATE_NOT_REQUESTED) != 1 || SSL_do_handshake(ssl) != 1))
                return EDGE_TLS13_BAD_RECORD;
        } else if (p[0] != 4) {   // anything but a new_session_ticket
            return EDGE_TLS13_BAD_RECORD;
        }
        p += 4 + len; n -= 4 + len;
    }
    return 0;
}

// Opens the record at buf (whole, `5 + body` bytes) in place: its inner type and content length,
// or -1 when it does not authenticate.
static int protection_open(protection *o, unsigned char *buf, size_t body, unsigned char *type, size_t *content) {
    unsigned char nonce[12];
    nonce_for(o, nonce);
    unsigned char *p = buf + 5;
    size_t clen = body - TAG_BYTES;
    int n = 0;
    if (EVP_DecryptInit_ex(o->ctx, NULL, NULL, NULL, nonce) != 1
        || EVP_DecryptUpdate(o->ctx, NULL, &n, buf, 5) != 1
        || EVP_DecryptUpdate(o->ctx, p, &n, p, (int)clen) != 1
        || EVP_CIPHER_CTX_ctrl(o->ctx, EVP_CTRL_AEAD_SET_TAG, TAG_BYTES, p + clen) != 1
        || EVP_DecryptFinal_ex(o->ctx, p + n, &n) != 1)
        return -1;   // a forged or damaged record
    if (o->sequence == UINT64_MAX) return -1;
    o->sequence++;
    // TLSInnerPlaintext: content, the real type, zero padding.
    size_t end = clen;
    while (end > 0 && p[end - 1] == 0) end--;
    if (end == 0) return -1;
    *type = p[end - 1];
    *content = end - 1;
    return 0;
}

// The header of a protected record at buf (len bytes there): its body length, 0 when the header
// is not whole yet, -1 when it is not one (§5.2: outer type application_data, version 0x0303).
static long record_body(const unsigned char *buf, size_t len) {
    if (len < 5) return 0;
    size_t body = (size_t)buf[3] << 8 | buf[4];
    if (buf[0] != 23 || buf[1] != 3 || buf[2] != 3 || body > RECORD_CIPHERTEXT_MAX || body < TAG_BYTES + 1) return -1;
    return (long)body;
}

int edge_tls13_open(edge_tls13_opener *opener, SSL *ssl, unsigned char *buf, size_t len, size_t *plain_offset,
                    size_t *plain_len) {
    *plain_offset = 0; *plain_len = 0;
    long body = record_body(buf, len);
    if (body < 0) return EDGE_TLS13_BAD_RECORD;
    if (body == 0 || len < 5 + (size_t)body) return 0;
    unsigned char type;
    size_t content;
    if (protection_open(&opener->p, buf, (size_t)body, &type, &content) != 0) return EDGE_TLS13_BAD_RECORD;
    unsigned char *p = buf + 5;
    switch (type) {
    case 23:
        *plain_offset = 5; *plain_len = content;
        return (int)(5 + body);
    case 22: {
        int r = post_handshake(&opener->p, ssl, p, content);
        return r < 0 ? r : (int)(5 + body);
    }
    case 21:
        if (content != 2) return EDGE_TLS13_BAD_RECORD;
        return p[1] == 0 ? EDGE_TLS13_CLOSED : EDGE_TLS13_ALERT;   // close_notify, or another alert
    default:
        return EDGE_TLS13_BAD_RECORD;
    }
}

// ---- A server's records sealed here ----

// Counts the records a server's OpenSSL wrote into its memory write BIO past `before` bytes: the
// call that ends a TLS 1.3 handshake writes only the session tickets, under the first
// application key, so their count is OpenSSL's sequence number there.
void edge_tls13_note_handshake_end(SSL *ssl, size_t before) {
    captured_secrets *s = SSL_get_ex_data(ssl, secrets_slot());
    if (!s || !SSL_is_server(ssl) || SSL_version(ssl) != TLS1_3_VERSION) return;
    char *data = NULL;
    long n = BIO_get_mem_data(SSL_get_wbio(ssl), &data);
    if (n < 0 || (size_t)n < before) return;
    const unsigned char *p = (const unsigned char *)data + before;
    size_t left = (size_t)n - before;
    long records = 0;
    while (left > 0) {
        long body = record_body(p, left);
        if (body <= 0 || left < 5 + (size_t)body) return;   // not whole records: no take-over
        records++;
        p += 5 + body; left -= 5 + (size_t)body;
    }
    s->server_records = records;
}

edge_tls13_sealer *edge_tls13_sealer_take(SSL *ssl) {
    captured_secrets *s = SSL_get_ex_data(ssl, secrets_slot());
    if (!s || s->server_len == 0 || s->server_records < 0 || !SSL_is_server(ssl) || !SSL_is_init_finished(ssl)
        || BIO_ctrl_pending(SSL_get_wbio(ssl)) != 0)
        return NULL;
    edge_tls13_sealer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    if (!protection_start(&t->ours, ssl, s, 1) || !protection_start(&t->openssl, ssl, s, 0)) {
        edge_tls13_sealer_free(t);
        return NULL;
    }
    t->ours.sequence = t->openssl.sequence = (uint64_t)s->server_records;
    edge_tls13_capture_end(ssl);
    return t;
}

void edge_tls13_sealer_free(edge_tls13_sealer *t) {
    if (!t) return;
    protection_end(&t->ours);
    protection_end(&t->openssl);
    free(t);
}

// One record of `type` holding a[0..<alen] then b[0..<blen] (at most 16384 bytes in all), sealed
// into out: its length, 0 on failure. Two pieces: what a connection staged, then the bytes it
// is given, with no copy to join them.
static size_t seal(protection *o, unsigned char type, const unsigned char *a, size_t alen, const unsigned char *b,
                   size_t blen, unsigned char *out) {
    size_t len = alen + blen;
    if (alen > 16384 || blen > 16384 || len > 16384 || o->sequence == UINT64_MAX) return 0;
    size_t body = len + 1 + TAG_BYTES;
    out[0] = 23; out[1] = 3; out[2] = 3; out[3] = (unsigned char)(body >> 8); out[4] = (unsigned char)body;
    unsigned char nonce[12];
    nonce_for(o, nonce);
    unsigned char *c = out + 5;
    int n = 0;
    if (EVP_EncryptInit_ex(o->ctx, NULL, NULL, NULL, nonce) != 1
        || EVP_EncryptUpdate(o->ctx, NULL, &n, out, 5) != 1
        || (alen > 0 && EVP_EncryptUpdate(o->ctx, c, &n, a, (int)alen) != 1)
        || (blen > 0 && EVP_EncryptUpdate(o->ctx, c + alen, &n, b, (int)blen) != 1)
        || EVP_EncryptUpdate(o->ctx, c + len, &n, &type, 1) != 1
        || EVP_EncryptFinal_ex(o->ctx, c + len + 1, &n) != 1
        || EVP_CIPHER_CTX_ctrl(o->ctx, EVP_CTRL_AEAD_GET_TAG, TAG_BYTES, c + len + 1) != 1)
        return 0;
    o->sequence++;
    return 5 + body;
}

size_t edge_tls13_seal(edge_tls13_sealer *t, const void *staged, size_t staged_len, const void *in, size_t len,
                       unsigned char *out) {
    return seal(&t->ours, 23, staged, staged_len, in, len, out);
}

long edge_tls13_transcribe(edge_tls13_sealer *t, SSL *ssl, unsigned char *out, size_t cap) {
    BIO *wbio = SSL_get_wbio(ssl);
    char *data = NULL;
    long n = BIO_get_mem_data(wbio, &data);
    if (n <= 0) return 0;
    unsigned char *p = (unsigned char *)data;
    size_t left = (size_t)n, written = 0;
    while (left > 0) {
        long body = record_body(p, left);
        if (body <= 0 || left < 5 + (size_t)body) return -1;   // OpenSSL writes whole records
        unsigned char type;
        size_t content;
        // Opened in the BIO's own buffer: it is read out (below) and never sent as it is.
        if (protection_open(&t->openssl, p, (size_t)body, &type, &content) != 0) return -1;
        if (written + 5 + content + 1 + TAG_BYTES > cap) return -1;
        size_t k = seal(&t->ours, type, p + 5, content, NULL, 0, out + written);
        if (k == 0) return -1;
        written += k;
        // A key update (§4.6.3, the last message of its record): the next records use the next
        // key, OpenSSL's and ours.
        int updated = 0;
        for (size_t at = 0; type == 22 && at + 4 <= content;) {
            size_t m = (size_t)p[5 + at + 1] << 16 | (size_t)p[5 + at + 2] << 8 | p[5 + at + 3];
            if (p[5 + at] == 24) updated = 1;
            at += 4 + m;
        }
        if (updated && (!protection_update(&t->ours) || !protection_update(&t->openssl))) return -1;
        p += 5 + body; left -= 5 + (size_t)body;
    }
    (void)BIO_reset(wbio);
    return (long)written;
}
