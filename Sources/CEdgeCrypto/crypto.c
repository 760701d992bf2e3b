#include "CEdgeCrypto.h"
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <string.h>

int edge_hmac_sha256(const uint8_t *key, size_t keylen, const uint8_t *data, size_t len, uint8_t out[32]) {
    unsigned int outlen = 32;
    return HMAC(EVP_sha256(), key, (int)keylen, data, len, out, &outlen) ? 0 : -1;
}
int edge_constant_time_equal(const void *a, const void *b, size_t len) { return CRYPTO_memcmp(a, b, len) == 0; }
int edge_random_bytes(uint8_t *out, int len) { return RAND_bytes(out, len) == 1 ? 0 : -1; }
int edge_sha256(const void *data, size_t len, uint8_t out[32]) {
    unsigned int n = 32;
    return EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) == 1 ? 0 : -1;
}


int edge_aes128_ctr(const uint8_t key[16], const uint8_t iv[16], uint64_t offset, const uint8_t *in, uint8_t *out, size_t len) {
    // Counter block for this offset: iv + offset/16 (128-bit big-endian addition).
    uint8_t ctr[16]; memcpy(ctr, iv, 16);
    uint64_t add = offset / 16; int carry = 0;
    for (int i = 15; i >= 0; i--) {
        unsigned v = ctr[i] + (unsigned)(add & 0xff) + carry;
        ctr[i] = (uint8_t)v; carry = v >> 8; add >>= 8;
    }
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (!c) return -1;
    int ok = EVP_EncryptInit_ex(c, EVP_aes_128_ctr(), NULL, key, ctr) == 1;
    int n = 0;
    unsigned skip = (unsigned)(offset % 16);
    if (ok && skip) { uint8_t z[16] = {0}, d[16]; ok = EVP_EncryptUpdate(c, d, &n, z, (int)skip) == 1; }
    size_t done = 0;
    while (ok && done < len) {
        int chunk = (int)((len - done) > (1u << 30) ? (1u << 30) : (len - done));
        ok = EVP_EncryptUpdate(c, out + done, &n, in + done, chunk) == 1;
        done += (size_t)n;
    }
    EVP_CIPHER_CTX_free(c);
    return ok ? 0 : -1;
}
int edge_aes256_gcm_seal(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *in, size_t len, uint8_t *out, uint8_t tag[16]) {
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new(); int n = 0, ok;
    ok = c && EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce) == 1
        && EVP_EncryptUpdate(c, out, &n, in, (int)len) == 1
        && EVP_EncryptFinal_ex(c, out + n, &n) == 1
        && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1;
    EVP_CIPHER_CTX_free(c);
    return ok ? 0 : -1;
}
int edge_aes256_gcm_open(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *in, size_t len, const uint8_t tag[16], uint8_t *out) {
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new(); int n = 0, ok;
    ok = c && EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce) == 1
        && EVP_DecryptUpdate(c, out, &n, in, (int)len) == 1
        && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, (void *)tag) == 1
        && EVP_DecryptFinal_ex(c, out + n, &n) == 1;
    EVP_CIPHER_CTX_free(c);
    return ok ? 0 : -1;
}
