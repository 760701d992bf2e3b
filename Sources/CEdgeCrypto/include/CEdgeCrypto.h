// HMAC, SHA-256, random bytes and AES (OpenSSL libcrypto only): what a tool that signs tokens or
// packages audio links, without the ring or TLS.
#ifndef CEDGECRYPTO_H
#define CEDGECRYPTO_H
#include <stdint.h>
#include <stddef.h>

// HMAC-SHA256; returns 0 on success.
int edge_hmac_sha256(const uint8_t *key, size_t keylen, const uint8_t *data, size_t len, uint8_t out[32]);
int edge_constant_time_equal(const void *a, const void *b, size_t len);
int edge_random_bytes(uint8_t *out, int len);
int edge_sha256(const void *data, size_t len, uint8_t out[32]);
// AES-128-CTR over `len` bytes that start `offset` bytes into the stream whose counter block 0 is
// `iv` (the counter for byte o is iv + o/16, big-endian 128-bit). Encrypt and decrypt are the same.
int edge_aes128_ctr(const uint8_t key[16], const uint8_t iv[16], uint64_t offset, const uint8_t *in, uint8_t *out, size_t len);
// AES-256-GCM with a 12-byte nonce and a 16-byte tag. Open returns -1 when the tag does not verify.
int edge_aes256_gcm_seal(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *in, size_t len, uint8_t *out, uint8_t tag[16]);
int edge_aes256_gcm_open(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *in, size_t len, const uint8_t tag[16], uint8_t *out);
#endif
